package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/buildinfo"
	"github.com/pplug/pplug/internal/testenv"
)

// Usage errors exit 2 with one line naming the command and a pointer to
// its help, and print nothing on stdout.
func TestUsageErrorsOneLine(t *testing.T) {
	model := testenv.Stories260K(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"generate", "-x"}, "pplug generate: flag provided but not defined: -x\nRun 'pplug generate --help' for usage.\n"},
		{[]string{"generate", "-m", model, "-n", "four"}, "pplug generate: invalid value \"four\" for flag -n: parse error\nRun 'pplug generate --help' for usage.\n"},
		{[]string{"frobnicate"}, "pplug: unknown command \"frobnicate\"\nRun 'pplug --help' for usage.\n"},
		{[]string{"plug", "frobnicate"}, "pplug plug: unknown command \"frobnicate\"\nRun 'pplug plug --help' for usage.\n"},
		{[]string{"plug", "init", "-m", model}, "pplug plug init: required flag --output not set\nRun 'pplug plug init --help' for usage.\n"},
		{[]string{"info", "-m", model, "extra"}, "pplug info: unexpected argument \"extra\": this command takes no arguments (quote text that holds spaces)\nRun 'pplug info --help' for usage.\n"},
		{[]string{"info", "extra", "-m", model}, "pplug info: unexpected argument \"extra\": this command takes no arguments (quote text that holds spaces)\nRun 'pplug info --help' for usage.\n"},
		{[]string{"generate", "-m", model, "--explain-k", "-1"}, "pplug generate: --explain-k -1: want 1 or more\nRun 'pplug generate --help' for usage.\n"},
		{[]string{"--frobnicate"}, "pplug: flag provided but not defined: -frobnicate\nRun 'pplug --help' for usage.\n"},
	} {
		code, out, errs := pplug(t, "", tc.args...)
		if code != 2 || errs != tc.want || out != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want exit 2, stderr %q", tc.args, code, errs, out, tc.want)
		}
	}
}

// Every command without positional arguments refuses them.
func TestCommandsRefuseStrayArguments(t *testing.T) {
	checked := 0
	for _, cmd := range leafCommands() {
		if cmd.takesArgs {
			continue
		}
		checked++
		args := append(strings.Fields(cmd.path), "stray")
		code, _, errs := pplug(t, "", args...)
		if code != 2 || !strings.Contains(errs, `unexpected argument "stray"`) && !strings.Contains(errs, `unknown command "stray"`) {
			t.Errorf("%q: exit %d: %s", args, code, errs)
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d commands", checked)
	}
}

// generate takes the prompt as positional words, and flags after them
// still count.
func TestGeneratePositionalPrompt(t *testing.T) {
	model := testenv.Stories260K(t)
	_, want, _ := pplug(t, "", "generate", "-m", model, "-p", "Once upon a time", "-n", "4", "--temp", "0", "-t", "1")
	for _, args := range [][]string{
		{"generate", "-m", model, "Once upon a time", "-n", "4", "--temp", "0", "-t", "1"},
		{"generate", "-m", model, "Once", "upon", "a", "time", "-n", "4", "--temp", "0", "-t", "1"},
		{"generate", "Once upon a time", "-m", model, "-n=4", "--temp", "0", "-t", "1"},
		{"generate", "-m", model, "-n", "4", "--temp", "0", "-t", "1", "--", "Once upon a time"},
	} {
		code, out, errs := pplug(t, "", args...)
		if code != 0 || out != want {
			t.Errorf("%q: exit %d, %q, want %q (%s)", args, code, out, want, errs)
		}
	}
	if code, _, errs := pplug(t, "", "generate", "-m", model, "-p", "Once", "upon"); code != 2 || !strings.Contains(errs, `unexpected argument "upon"`) {
		t.Errorf("-p and a positional prompt: exit %d: %s", code, errs)
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(nil, nil, nil)
	for _, tc := range []struct{ in, want string }{
		{"pplug generate -m M Once upon -n 4", "pplug generate -m M -n 4 Once upon"},
		{"pplug -v generate Once --temp 0 --echo -t 1", "pplug -v generate --temp 0 --echo -t 1 Once"},
		{"pplug generate -m M -- -n 4", "pplug generate -m M -- -n 4"},
		{"pplug generate -m M - -n 4", "pplug generate -m M -n 4 -"},
		{"pplug plug info P.gguf --json", "pplug plug info --json P.gguf"},
		{"pplug frob -x", "pplug -x frob"},
		{"pplug generate -p", "pplug generate -p"},
		{"pplug generate Once -m M --generate-bash-completion", "pplug generate Once -m M --generate-bash-completion"},
	} {
		if got := strings.Join(reorderArgs(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestVersionFlagAndHelpDefaults(t *testing.T) {
	code, out, errs := pplug(t, "", "--version")
	if code != 0 || !strings.Contains(out, buildinfo.Version) {
		t.Fatalf("--version: exit %d, %q %s", code, out, errs)
	}
	code, out, _ = pplug(t, "", "generate", "--help")
	if code != 0 {
		t.Fatalf("generate --help: exit %d", code)
	}
	for _, want := range []string{"(default: 0.8)", "(default: 0.95)", "(default: 0.05)"} {
		if !strings.Contains(out, want) {
			t.Errorf("generate --help lacks %q", want)
		}
	}
	if strings.Contains(out, "0.8000") || strings.Contains(out, "0.9499") || strings.Contains(out, "0.0500") {
		t.Errorf("generate --help prints float32 noise:\n%s", out)
	}
}

// synth refuses absurd shapes at once (usage error) and models larger than
// the free space before writing anything.
func TestSynthSizeChecks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "big.gguf")
	vocab := testenv.Phi3Vocab(t)
	start := time.Now()
	code, _, errs := pplug(t, "", "synth", "--arch", "llama", "--n-embd", "1000000", "--n-layer", "1", "--n-head", "4", "--n-ff", "64",
		"--vocab", vocab, "-o", out)
	if code != 2 || !strings.Contains(errs, "n_embd 1000000") {
		t.Errorf("absurd n_embd: exit %d: %s", code, errs)
	}
	// About 2 PiB of F32 weights: no disk has that much free.
	code, _, errs = pplug(t, "", "synth", "--arch", "llama", "--type", "f32", "--n-embd", "262144", "--n-layer", "1024", "--n-head", "64",
		"--n-ff", "262144", "--vocab", vocab, "-o", out)
	if code != 1 || !strings.Contains(errs, "not enough free disk space") || !strings.Contains(errs, "--force") || !strings.Contains(errs, out) {
		t.Errorf("model larger than the disk: exit %d: %s", code, errs)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the refusals took %s", took)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused synth runs left %d files", len(ents))
	}
}

// cliCommand is a command of the app, for tests that walk them all.
type cliCommand struct {
	path      string
	takesArgs bool
}

func leafCommands() []cliCommand {
	var out []cliCommand
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := strings.TrimSpace(prefix + " " + c.Name)
			if c.Action != nil {
				out = append(out, cliCommand{path: p, takesArgs: c.ArgsUsage != ""})
			}
			walk(p, c.Subcommands)
		}
	}
	walk("", newApp(nil, nil, nil).Commands)
	slices.SortFunc(out, func(a, b cliCommand) int { return strings.Compare(a.path, b.path) })
	return out
}

// hugeProfile writes a profile whose first item holds mb megabytes of text.
func hugeProfile(t *testing.T, mb int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "huge.json")
	var b strings.Builder
	b.WriteString(`[{"id": "1", "text": "`)
	b.WriteString(strings.Repeat("the dog ran to the park. ", mb<<20/25))
	b.WriteString(`"}, {"id": "2", "text": "Lily had a red ball."}]`)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHugeItemIsCut: a history item of many megabytes is cut at load (with a
// warning naming it), so that retrieval and encoding do bounded work.
func TestHugeItemIsCut(t *testing.T) {
	model := testenv.Stories260K(t)
	prof := hugeProfile(t, 8)
	code, _, errs := pplug(t, "", "generate", "-m", model, "-p", "Once", "-n", "2", "--temp", "0", "--profile", prof)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "item 0 (id") || !strings.Contains(errs, "cut to its first 65536") {
		t.Fatalf("no warning about the cut item:\n%s", errs)
	}
}

// TestSigtermDuringProfileLoad: SIGTERM while a huge profile is read stops
// the run at once with 143 (128 + SIGTERM), as shells report it.
func TestSigtermDuringProfileLoad(t *testing.T) {
	model := testenv.Stories260K(t)
	prof := hugeProfile(t, 120)
	cmd := runPplug(context.Background(), "", "generate", "-m", model, "-p", "Once", "-n", "2", "--profile", prof)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the load of 120 MB takes seconds
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	took := time.Since(sent)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 || !strings.Contains(stderr.String(), "stopped by terminated") {
		t.Fatalf("after SIGTERM: %v, stderr %q; want exit 143", err, stderr.String())
	}
	// Far below the whole load; generous for a loaded machine.
	if took > 3*time.Second {
		t.Fatalf("took %v to stop after SIGTERM", took)
	}
}

// helpNameWidth is the widest column before the flag descriptions start in
// a command's help (urfave/cli aligns every flag's description to the
// widest name), 0 when it lists no flags.
func helpNameWidth(help string) (int, string) {
	_, opts, ok := strings.Cut(help, "OPTIONS:\n")
	if !ok {
		return 0, ""
	}
	width, name, widest := 0, 0, ""
	for _, line := range strings.Split(opts, "\n") {
		if !strings.HasPrefix(line, "   -") {
			continue
		}
		// The description starts after the first run of two spaces.
		if i := strings.Index(line[3:], "  "); i >= 0 {
			desc := strings.TrimLeft(line[3+i:], " ")
			width = max(width, len(line)-len(desc))
			if i > name {
				name, widest = i, strings.TrimSpace(line[:3+i])
			}
		}
	}
	return width, widest
}

// TestHelpFitsEighty: in every command's help, flag descriptions start
// within 80 columns, so a terminal of 80 shows where each begins.
func TestHelpFitsEighty(t *testing.T) {
	var paths [][]string
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string(nil), prefix...), c.Name)
			paths = append(paths, p)
			walk(p, c.Subcommands)
		}
	}
	walk(nil, newApp(nil, nil, nil).Commands)
	paths = append(paths, nil) // pplug --help
	for _, p := range paths {
		code, out, errs := pplug(t, "", append(p, "--help")...)
		if code != 0 {
			t.Errorf("%q --help: exit %d: %s", p, code, errs)
			continue
		}
		if w, line := helpNameWidth(out); w > 80 {
			t.Errorf("pplug %s --help: descriptions start at column %d, want at most 80; the widest name: %s", strings.Join(p, " "), w, line)
		}
	}
	if len(paths) < 15 {
		t.Fatalf("walked only %d commands", len(paths))
	}
}
