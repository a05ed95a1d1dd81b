package scripts_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// graphLines returns the "pkg -> imports" lines of an arch-report output.
func graphLines(out string) map[string][]string {
	graph := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		from, to, ok := strings.Cut(line, " -> ")
		if ok && !strings.HasPrefix(line, "#") {
			graph[from] = strings.Fields(to)
		}
	}
	return graph
}

var largestLine = regexp.MustCompile(`^\s*(\d+)  (\S+)\s+(\S+):(\d+)$`)

// TestArchReportWorkingTree runs scripts/arch-report.sh on the working tree:
// the graph names the module's packages, the ten largest functions are
// sorted and each points at the line of its func keyword.
func TestArchReportWorkingTree(t *testing.T) {
	root := repoRoot(t)
	out, stderr, code := runTool(t, nil, "bash", "scripts/arch-report.sh")
	if code != 0 {
		t.Fatalf("arch-report.sh: exit %d: %s", code, stderr)
	}
	graph := graphLines(out)
	for _, want := range []string{"llama", "persona", "cmd/pplug", "scripts/archreport"} {
		if _, ok := graph[want]; !ok {
			t.Errorf("graph has no line for %s:\n%s", want, out)
		}
	}
	var sizes []int
	for _, line := range strings.Split(out, "\n") {
		m := largestLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		sizes = append(sizes, n)
		checkFuncAt(t, filepath.Join(root, m[3]), m[4], m[2])
	}
	if len(sizes) != 10 {
		t.Fatalf("%d largest functions listed, want 10:\n%s", len(sizes), out)
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] > sizes[i-1] {
			t.Errorf("largest functions not in descending order: %v", sizes)
		}
	}
}

// checkFuncAt checks that line of path declares the function name.
func checkFuncAt(t *testing.T, path, line, name string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	n, _ := strconv.Atoi(line)
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		t.Errorf("%s:%d: no such line", path, n)
		return
	}
	short := name[strings.LastIndex(name, ".")+1:]
	if !strings.HasPrefix(lines[n-1], "func ") || !strings.Contains(lines[n-1], short+"(") {
		t.Errorf("%s:%d is %q, not the declaration of %s", path, n, lines[n-1], name)
	}
}

// TestOnlyTheRawLayerSpeaksCgo holds issue 24's rule on the report's graph:
// only llama, llama/synth and traingraph import the cgo bindings (and cgo
// itself and its parts use C).
func TestOnlyTheRawLayerSpeaksCgo(t *testing.T) {
	out, stderr, code := runTool(t, nil, "bash", "scripts/arch-report.sh")
	if code != 0 {
		t.Fatalf("arch-report.sh: exit %d: %s", code, stderr)
	}
	allowed := map[string]bool{"llama": true, "llama/synth": true, "traingraph": true, "cgo": true, "cgo/amx": true}
	for from, imports := range graphLines(out) {
		for _, imp := range imports {
			if (imp == "cgo" || imp == "C") && !allowed[from] {
				t.Errorf("%s imports %s; only llama, llama/synth and traingraph may speak to cgo", from, imp)
			}
		}
	}
}

// TestArchReportCounts runs the report on a small module whose largest
// function and graph are known.
func TestArchReportCounts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.22\n")
	write("a/a.go", "package a\n\nimport \"example.com/m/b\"\n\nfunc Big() int {\n\tx := b.B()\n\tx++\n\treturn x\n}\n")
	write("b/b.go", "package b\n\ntype T struct{}\n\nfunc (*T) M() {}\n\nfunc B() int { return 1 }\n")
	write("b/b_test.go", "package b\n\nfunc helperNotCounted() {\n\n\n\n\n\n\n\n}\n")
	out, stderr, code := runTool(t, nil, "go", "run", "./scripts/archreport", "-dir", dir, "-top", "2")
	if code != 0 {
		t.Fatalf("archreport: exit %d: %s", code, stderr)
	}
	graph := graphLines(out)
	if got := strings.Join(graph["a"], " "); got != "b" {
		t.Errorf("a imports %q, want b:\n%s", got, out)
	}
	for _, want := range []string{"# 2 largest of 3 functions", "    5  Big ", "a/a.go:5", "    1  T.M ", "b/b.go:5"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "helperNotCounted") {
		t.Errorf("a test file's function was counted:\n%s", out)
	}
}

// TestArchReportRefusesBadRevision: an unknown revision is a usage error.
func TestArchReportRefusesBadRevision(t *testing.T) {
	_, stderr, code := runTool(t, nil, "bash", "scripts/arch-report.sh", "no-such-revision")
	if code != 2 || !strings.Contains(stderr, "no-such-revision is not a commit") {
		t.Errorf("exit %d, stderr %q; want exit 2 naming the revision", code, stderr)
	}
}
