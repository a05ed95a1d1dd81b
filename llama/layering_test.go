package llama

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const cgoPkg = "github.com/pplug/pplug/cgo"

// cgoImporters may import the raw binding: llama is the API over it,
// llama/synth writes GGUF models, traingraph is model logic with its own C,
// and the binding's own subpackages.
var cgoImporters = []string{
	"github.com/pplug/pplug/llama",
	"github.com/pplug/pplug/llama/synth",
	"github.com/pplug/pplug/traingraph",
}

// Only llama (and the packages above) speaks to cgo: every other package
// of the module goes through llama's types. go list gives each package's
// imports (not its tests').
func TestOnlyLlamaImportsCgo(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "github.com/pplug/pplug/...").Output()
	if err != nil {
		t.Fatalf("go list: %v (is the go command on PATH?)", err)
	}
	var seen int
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		seen++
		pkg, imports := f[0], f[1:]
		if offender(pkg, imports) {
			t.Errorf("%s imports %s: go through llama's types instead (only %v may)", pkg, cgoPkg, cgoImporters)
		}
	}
	if seen < 10 {
		t.Fatalf("go list named %d packages: %q", seen, out)
	}
}

// offender reports whether pkg breaks the rule.
func offender(pkg string, imports []string) bool {
	if pkg == cgoPkg || strings.HasPrefix(pkg, cgoPkg+"/") || slices.Contains(cgoImporters, pkg) {
		return false
	}
	for _, imp := range imports {
		if imp == cgoPkg || strings.HasPrefix(imp, cgoPkg+"/") {
			return true
		}
	}
	return false
}

// The rule itself: a package beside llama that imports cgo or one of its
// subpackages is an offender; llama, synth, traingraph and cgo's own are not.
func TestCgoImportRule(t *testing.T) {
	for _, tc := range []struct {
		pkg     string
		imports []string
		want    bool
	}{
		{"github.com/pplug/pplug/persona", []string{"fmt", cgoPkg}, true},
		{"github.com/pplug/pplug/internal/buildinfo", []string{cgoPkg + "/amx"}, true},
		{"github.com/pplug/pplug/persona", []string{"github.com/pplug/pplug/llama"}, false},
		{"github.com/pplug/pplug/llama", []string{cgoPkg}, false},
		{"github.com/pplug/pplug/traingraph", []string{cgoPkg}, false},
		{cgoPkg, []string{cgoPkg + "/amx"}, false},
		{"github.com/pplug/pplug/cgox", []string{"github.com/pplug/pplug/cgox"}, false},
	} {
		if got := offender(tc.pkg, tc.imports); got != tc.want {
			t.Errorf("%s importing %v: offender %v, want %v", tc.pkg, tc.imports, got, tc.want)
		}
	}
}
