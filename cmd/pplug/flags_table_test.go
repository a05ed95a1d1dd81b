package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
)

// numericFlag is one numeric flag of one command and the values to try.
type numericFlag struct {
	cmd    string // "generate", "plug init"
	name   string
	names  []string // name and aliases
	values []string
}

var (
	intValues   = []string{"-9223372036854775808", "-1", "0", "2147483648", "9223372036854775807"}
	uintValues  = []string{"0", "4294967296", "18446744073709551615"}
	floatValues = []string{"-1e308", "-1", "0", "1e308", "NaN"}
	listNumber  = regexp.MustCompile(`^-?[0-9.]+(,-?[0-9.]+)*$`)
)

// numericFlags lists every numeric flag of every command of the CLI, read
// from the urfave/cli definition so that a new flag is covered at once:
// int, uint and float flags, and list or string flags whose default is a
// number or a comma list of numbers (bench's -p 512, --agg-items 32,128).
func numericFlags() []numericFlag {
	var out []numericFlag
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := strings.TrimSpace(path + " " + c.Name)
			for _, f := range c.Flags {
				name := f.Names()[0]
				var vals []string
				switch f := f.(type) {
				case *cli.IntFlag, *cli.Int64Flag:
					vals = intValues
				case *cli.UintFlag, *cli.Uint64Flag:
					vals = uintValues
				case *cli.Float64Flag:
					vals = floatValues
				case *cli.GenericFlag, *cli.StringFlag:
					if def := f.(cli.DocGenerationFlag).GetValue(); listNumber.MatchString(def) {
						vals = intValues
					}
				}
				if vals != nil {
					out = append(out, numericFlag{cmd: p, name: name, names: f.Names(), values: vals})
				}
			}
			walk(p, c.Subcommands)
		}
	}
	walk("", newApp(nil, io.Discard, io.Discard).Commands)
	return out
}

// TestNumericFlagsNeverPanic runs every numeric flag of every command with
// negative, zero and huge values through the CLI's entry point on
// stories260K: no panic, exit status 0, 1 or 2 (2 for refused values), and
// each run ends within a bound.
func TestNumericFlagsNeverPanic(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	f := func(n string) string { return filepath.Join(dir, n) }
	root, _ := testenv.RepoRoot()
	profileFile := filepath.Join(root, "examples", "profiles", "lily.json")
	if code, _, errs := pplug(t, "", "plug", "init", "-m", model, "-o", f("plug.gguf"), "-t", "1"); code != 0 {
		t.Fatalf("plug init: %s", errs)
	}
	ds, err := synthusers.Generate(synthusers.Options{Users: 8, Items: 4, QuestionsPerUser: 1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := synthusers.Write(f("data"), ds); err != nil {
		t.Fatal(err)
	}
	q, o := f("data/dev_questions.json"), f("data/dev_outputs.json")
	cache := f("cache")
	// What each command needs to run to its end quickly; the flag under
	// test comes last and so overrides these.
	base := map[string][]string{
		"generate": {"-m", model, "-p", "Once", "-n", "2", "-t", "1", "--temp", "0", "-c", "64",
			"--profile", profileFile, "--plug", f("plug.gguf"), "--explain", "--cache-dir", cache},
		"info":  {"-m", model},
		"embed": {"-m", model, "-p", "Once", "-t", "1"},
		"chat":  {"-m", model, "-n", "2", "-t", "1", "--temp", "0", "-c", "128"},
		"bench": {"-m", model, "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--no-c-loop", "--no-warmup", "-o", "csv"},
		"train": {"-m", model, "--questions", f("data/train_questions.json"), "--outputs", f("data/train_outputs.json"),
			"-o", f("trained.gguf"), "--epochs", "1", "--batch", "2", "--augment", "1", "--limit", "2", "-t", "1",
			"--max-input", "16", "--max-target", "8", "--cache-dir", cache},
		"plug init":      {"-m", model, "-o", f("plug2.gguf"), "-t", "1"},
		"profile encode": {"--profile", profileFile, "-m", model, "-t", "1", "--cache-dir", cache},
		"synth": {"--arch", "llama", "--n-embd", "64", "--n-layer", "1", "--n-head", "4", "--n-ff", "64", "--n-vocab", "0",
			"--vocab", testenv.Phi3Vocab(t), "-o", f("synth.gguf")},
		"eval": {"--task", "LaMP_7", "--questions", q, "--golds", o, "-m", model, "--methods", "none", "--limit", "1",
			"-n", "2", "--out", f("eval"), "-t", "1", "-c", "256"},
		"eval nll": {"--task", "LaMP_7", "--questions", q, "--golds", o, "-m", model, "--plug", f("plug.gguf"), "--limit", "1", "-t", "1", "--cache-dir", cache},
		"eval show": {"--task", "LaMP_7", "--questions", q, "--golds", o, "-m", model, "--plug", f("plug.gguf"), "--users", "1",
			"-n", "2", "-t", "1", "-c", "256", "--cache-dir", cache},
		"eval synth-users": {"-o", f("users"), "--users", "8", "--items", "4"},
		"profile import":   {"--profiles", f("profiles.db"), "--user", "u1", "--profile", profileFile},
		"serve":            {"-m", model, "--port", "0", "-t", "1", "-c", "256", "--profiles", f("profiles.db")},
	}
	// Servers run until stopped: a run that is still serving when its
	// (short) bound ends is a success; a refused value must exit at once.
	// They run in parallel, each with its own profile database.
	serving := map[string]time.Duration{"serve": time.Second}
	stdin := map[string]string{"chat": "hi\n"}
	const bound = 60 * time.Second
	// The base arguments alone succeed, so that the runs below get as far
	// as their flag takes them.
	limit := func(cmd string) time.Duration {
		if d, ok := serving[cmd]; ok {
			return d
		}
		return bound
	}
	for cmd, args := range base {
		full := append(strings.Fields(cmd), args...)
		code, errs, _, expired := runBounded(t, limit(cmd), stdin[cmd], full...)
		if _, srv := serving[cmd]; (srv && !expired) || (!srv && code != 0) {
			t.Fatalf("base arguments of %q: exit %d: %s", cmd, code, errs)
		}
	}
	flags := numericFlags()
	if len(flags) < 40 {
		t.Fatalf("found only %d numeric flags: the enumeration is broken", len(flags))
	}
	for _, nf := range flags {
		args, ok := base[nf.cmd]
		if !ok {
			t.Errorf("no base arguments for %q (flag --%s): add them to this test", nf.cmd, nf.name)
			continue
		}
		for _, v := range nf.values {
			t.Run(fmt.Sprintf("%s/%s=%s", strings.ReplaceAll(nf.cmd, " ", "_"), nf.name, v), func(t *testing.T) {
				full := append(strings.Fields(nf.cmd), without(args, nf.names)...)
				full = append(full, "--"+nf.name, v)
				if _, srv := serving[nf.cmd]; srv {
					t.Parallel()
					full = append(full, "--profiles", filepath.Join(t.TempDir(), "profiles.db"))
				}
				code, errs, took, expired := runBounded(t, limit(nf.cmd), stdin[nf.cmd], full...)
				t.Logf("exit %d in %s: %s", code, took.Round(time.Millisecond), strings.SplitN(strings.TrimSpace(errs), "\n", 2)[0])
				_, srv := serving[nf.cmd]
				switch {
				case expired && srv:
					// still serving: the value was taken
				case expired:
					t.Fatalf("%v still running after %s (exit %d): %s", full, bound, code, errs)
				case took > limit(nf.cmd)+10*time.Second:
					t.Fatalf("%v took %s after its deadline", full, took)
				case !slices.Contains([]int{0, 1, 2}, code):
					t.Fatalf("exit %d for %v: %s", code, full, errs)
				case code != 0 && strings.TrimSpace(errs) == "":
					t.Fatalf("exit %d without a message for %v", code, full)
				case code == 2 && !strings.Contains(errs, "--help"):
					t.Fatalf("usage error without a pointer to --help: %s", errs)
				}
			})
		}
	}
}

// runBounded runs the CLI with a deadline (expired says it was reached)
// and turns a panic into a test failure.
func runBounded(t *testing.T, bound time.Duration, stdin string, args ...string) (code int, stderr string, took time.Duration, expired bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var errb strings.Builder
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic for %v: %v", args, r)
		}
	}()
	code = runContext(ctx, append([]string{"pplug"}, args...), strings.NewReader(stdin), io.Discard, &errb)
	return code, errb.String(), time.Since(start), ctx.Err() != nil
}

// without drops the flags named names, and their values, from args
// (urfave/cli refuses -n and --n-predict in one command line).
func without(args, names []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if n := strings.TrimLeft(args[i], "-"); strings.HasPrefix(args[i], "-") && slices.Contains(names, n) {
			i++ // its value
			continue
		}
		out = append(out, args[i])
	}
	return out
}
