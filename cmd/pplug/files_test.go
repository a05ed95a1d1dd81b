package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/testenv"
)

// declaredFlag is a flag of a command with its declared role (files.go).
type declaredFlag struct {
	name string
	spec fileFlag
}

// commandFileFlags are a command's input and output flags.
type commandFileFlags struct {
	path            string
	inputs, outputs []declaredFlag
}

// fileCommands walks the command tree: every command that runs an action,
// with its declared input and output flags.
func fileCommands() []commandFileFlags {
	var out []commandFileFlags
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := strings.TrimSpace(prefix + " " + c.Name)
			cf := commandFileFlags{path: p}
			for _, f := range c.Flags {
				spec, ok := fileFlagOf(p, f.Names()[0])
				switch {
				case !ok || spec.role == notPath:
				case spec.role == inputFile:
					cf.inputs = append(cf.inputs, declaredFlag{f.Names()[0], spec})
				default:
					cf.outputs = append(cf.outputs, declaredFlag{f.Names()[0], spec})
				}
			}
			if c.Action != nil {
				out = append(out, cf)
			}
			walk(p, c.Subcommands)
		}
	}
	walk("", newApp(nil, io.Discard, io.Discard).Commands)
	return out
}

// takesValue reports whether a flag takes a value that could be a path:
// any flag but booleans and numbers.
func takesValue(f cli.Flag) bool {
	switch f.(type) {
	case *cli.BoolFlag, *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag, *cli.Float64Flag:
		return false
	}
	return true
}

// Every flag of every command that takes a value is declared in files.go
// as an input, an output or text, so that a new flag or command cannot
// leave its files unchecked; a flag whose help says it takes a FILE or a
// DIR is not declared text.
func TestEveryFileFlagIsDeclared(t *testing.T) {
	var walk func(prefix string, cmds []*cli.Command)
	declared, paths := 0, 0
	commands := map[string]map[string]bool{}
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := strings.TrimSpace(prefix + " " + c.Name)
			commands[p] = map[string]bool{}
			for _, f := range c.Flags {
				name := f.Names()[0]
				commands[p][name] = true
				if !takesValue(f) {
					continue
				}
				spec, ok := fileFlagOf(p, name)
				if !ok {
					t.Errorf("pplug %s --%s is not declared in files.go: add it to flagFiles (one meaning in every command) or to commandFiles[%q] as an input, an output or text", p, name, p)
					continue
				}
				declared++
				usage := f.(cli.DocGenerationFlag).GetUsage()
				if spec.role == notPath && (strings.Contains(usage, "`FILE") || strings.Contains(usage, "`DIR")) {
					t.Errorf("pplug %s --%s takes a file (%q) but is declared text", p, name, usage)
				}
				if spec.role != notPath {
					paths++
				}
			}
			walk(p, c.Subcommands)
		}
	}
	walk("", newApp(nil, io.Discard, io.Discard).Commands)
	for cmd, flags := range commandFiles {
		for name := range flags {
			if !commands[cmd][name] {
				t.Errorf("commandFiles declares pplug %s --%s, which does not exist", cmd, name)
			}
		}
	}
	if declared < 100 || paths < 40 {
		t.Fatalf("only %d flags declared, %d of them paths: the walk is broken", declared, paths)
	}
}

// precious writes a file the command must not touch and returns its path.
func precious(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("precious "+path), 0o666); err != nil {
		t.Fatal(err)
	}
	return path
}

// aliases are other names of the file at path: itself, a symbolic link, a
// hard link and a path through "..".
func aliases(t *testing.T, path string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	link, hard := filepath.Join(dir, "link"), filepath.Join(dir, "hard")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path, hard); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(filepath.Dir(path), "sub")
	if err := os.MkdirAll(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"plain": path, "symlink": link, "hard link": hard,
		"dotdot": sub + string(filepath.Separator) + ".." + string(filepath.Separator) + filepath.Base(path)}
}

// refused runs the command line and checks that it is a usage error naming
// both flags and that the files are as they were.
func refused(t *testing.T, args []string, flagA, flagB string, files ...string) {
	t.Helper()
	before := make([][]byte, len(files))
	for i, f := range files {
		before[i], _ = os.ReadFile(f)
	}
	code, _, errs := pplug(t, "", args...)
	if code != 2 || !strings.Contains(errs, "--"+flagA+" ") || !strings.Contains(errs, "--"+flagB+" ") {
		t.Errorf("%q: exit %d, want 2 with an error naming --%s and --%s: %s", args, code, flagA, flagB, errs)
	}
	for i, f := range files {
		if after, err := os.ReadFile(f); err != nil || !bytes.Equal(after, before[i]) {
			t.Errorf("%q changed %s (%v)", args, f, err)
		}
	}
}

// cmdArgs is the command line of a command with flags and their values.
func cmdArgs(cmd string, flagValues ...string) []string {
	args := strings.Fields(cmd)
	for i := 0; i+1 < len(flagValues); i += 2 {
		args = append(args, "--"+flagValues[i], flagValues[i+1])
	}
	return args
}

// No command writes over one of its inputs: every output flag of every
// command, pointed at each input flag's file (or the files read beside
// it) under any of its names, is a usage error that names both flags, and
// the input is left as it was.
func TestOutputsNeverReplaceInputs(t *testing.T) {
	checked := 0
	for _, cf := range fileCommands() {
		for _, o := range cf.outputs {
			for _, in := range cf.inputs {
				dir := t.TempDir()
				file := precious(t, filepath.Join(dir, "in", in.name+".dat"))
				for kind, alias := range aliases(t, file) {
					t.Run(fmt.Sprintf("%s/%s=%s/%s", cf.path, o.name, in.name, kind), func(t *testing.T) {
						refused(t, cmdArgs(cf.path, in.name, in.spec.prefix+file, o.name, alias), o.name, in.name, file)
					})
					checked++
				}
				// The files read beside the input (a checkpoint's .opt).
				for _, suffix := range in.spec.beside {
					side := precious(t, file+suffix)
					refused(t, cmdArgs(cf.path, in.name, in.spec.prefix+file, o.name, side), o.name, in.name, file, side)
				}
				// The files written beside the output.
				for _, suffix := range o.spec.beside {
					side := precious(t, filepath.Join(dir, "side.gguf"+suffix))
					refused(t, cmdArgs(cf.path, in.name, in.spec.prefix+side, o.name, strings.TrimSuffix(side, suffix)), o.name, in.name, side)
				}
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d cases: the walk is broken", checked)
	}
}

// Outputs do not overwrite each other: two output flags of a command that
// name one file, or a file in an output folder under a name the command
// writes there, are a usage error; so is an input in such a place.
func TestOutputsNeverMeet(t *testing.T) {
	pairs, inDir := 0, 0
	for _, cf := range fileCommands() {
		for i, a := range cf.outputs {
			for _, b := range cf.outputs[i+1:] {
				same := filepath.Join(t.TempDir(), "out")
				refused(t, cmdArgs(cf.path, a.name, same, b.name, same), a.name, b.name)
				pairs++
			}
			for _, pattern := range a.spec.writes {
				dir := t.TempDir()
				name := filepath.Join(dir, strings.ReplaceAll(pattern, "*", "1"))
				for _, in := range cf.inputs {
					file := precious(t, name)
					refused(t, cmdArgs(cf.path, in.name, in.spec.prefix+file, a.name, dir), a.name, in.name, file)
					inDir++
				}
				for _, b := range cf.outputs {
					if b.name != a.name && b.spec.role == outputFile {
						refused(t, cmdArgs(cf.path, b.name, name, a.name, dir), a.name, b.name)
					}
				}
			}
		}
	}
	if pairs < 5 || inDir < 20 {
		t.Fatalf("checked %d output pairs and %d inputs in output folders: the walk is broken", pairs, inDir)
	}
}

// Inputs, outputs and output folders that do not meet pass the check:
// output folders may hold the inputs under names the command does not
// write there.
func TestSeparateFilesPassTheCheck(t *testing.T) {
	for _, cf := range fileCommands() {
		if len(cf.outputs) == 0 {
			continue
		}
		shared, other := t.TempDir(), t.TempDir()
		var args []string
		for _, in := range cf.inputs {
			args = append(args, in.name, in.spec.prefix+precious(t, filepath.Join(shared, in.name+".dat")))
		}
		firstDir := true
		for _, o := range cf.outputs {
			switch {
			case o.spec.role == outputDir && firstDir:
				args, firstDir = append(args, o.name, shared), false
			default:
				args = append(args, o.name, filepath.Join(other, o.name))
			}
		}
		code, _, errs := pplug(t, "", cmdArgs(cf.path, args...)...)
		if strings.Contains(errs, "would overwrite") {
			t.Errorf("%s refused files that do not meet (exit %d): %s", cf.path, code, errs)
		}
	}
}

// The cases of the issue, with real files: each is refused before any
// work and leaves the file as it was.
func TestIssueOverwritesRefused(t *testing.T) {
	dir := t.TempDir()
	model := copyFile(t, testenv.Stories260K(t), filepath.Join(dir, "M.gguf"))
	vocab := copyFile(t, testenv.Phi3Vocab(t), filepath.Join(dir, "vocab.gguf"))
	if code, _, errs := pplug(t, "", "eval", "synth-users", "-o", filepath.Join(dir, "data"), "--users", "8", "--items", "4"); code != 0 {
		t.Fatalf("synth-users: %s", errs)
	}
	q, o := filepath.Join(dir, "data", "train_questions.json"), filepath.Join(dir, "data", "train_outputs.json")
	train := []string{"train", "-m", model, "--questions", q, "--outputs", o, "--epochs", "1", "--batch", "2",
		"--augment", "1", "--limit", "2", "-t", "1", "--max-input", "16", "--max-target", "8", "--no-cache"}
	for _, tc := range []struct {
		args         []string
		flagA, flagB string
		file         string
	}{
		{append(train, "-o", model), "output", "model", model},
		{append(train, "-o", q), "output", "questions", q},
		{append(train, "-o", o), "output", "outputs", o},
		{append(train, "-o", filepath.Join(dir, "p.gguf"), "--report", q), "report", "questions", q},
		{append(train, "-o", filepath.Join(dir, "x.json"), "--report", filepath.Join(dir, "x.json")), "report", "output", q},
		{[]string{"plug", "init", "-m", model, "-o", model, "-t", "1"}, "output", "model", model},
		{[]string{"synth", "--vocab", vocab, "-o", vocab, "--arch", "llama", "--n-embd", "64", "--n-layer", "1",
			"--n-head", "4", "--n-ff", "64"}, "output", "vocab", vocab},
	} {
		refused(t, tc.args, tc.flagA, tc.flagB, tc.file)
	}
}

func copyFile(t *testing.T, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o666); err != nil {
		t.Fatal(err)
	}
	return to
}

// Under umask 077 every file the writing commands create is 0600 and
// every folder 0700 (plugs, optimizer states, checkpoints, reports, eval
// outputs, transcripts, caches, databases); the files in output folders
// carry the names files.go declares for them. The umask is process-wide:
// this test does not run in parallel.
func TestWritingCommandsFollowUmask(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	profileFile := filepath.Join(root, "examples", "profiles", "lily.json")
	dir := t.TempDir()
	f := func(n string) string { return filepath.Join(dir, n) }
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	runs := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"eval", "synth-users", "-o", f("data"), "--users", "8", "--items", "4"}},
		{"", []string{"plug", "init", "-m", model, "-o", f("plug.gguf"), "-t", "1"}},
		{"", []string{"train", "-m", model, "--questions", f("data/train_questions.json"), "--outputs", f("data/train_outputs.json"),
			"-o", f("trained.gguf"), "--checkpoint-dir", f("ckpt"), "--report", f("report.json"), "--cache-dir", f("cache"),
			"--epochs", "1", "--batch", "2", "--augment", "1", "--limit", "2", "-t", "1", "--max-input", "16", "--max-target", "8"}},
		{"", []string{"eval", "--task", "LaMP_7", "--questions", f("data/dev_questions.json"), "--golds", f("data/dev_outputs.json"),
			"-m", model, "--methods", "none", "--limit", "1", "-n", "2", "--out", f("eval"), "-t", "1", "-c", "256"}},
		{"", []string{"profile", "import", "--profiles", f("profiles.db"), "--user", "u1", "--profile", profileFile}},
		{"hi\n/save " + f("transcript.json") + "\n", []string{"chat", "-m", model, "-n", "2", "-t", "1", "--temp", "0", "-c", "128"}},
	}
	for _, r := range runs {
		if code, _, errs := pplug(t, r.stdin, r.args...); code != 0 {
			t.Fatalf("%q: exit %d: %s", r.args, code, errs)
		}
	}
	declared := map[string][]string{f("data"): synthUsersFiles(), f("eval"): evalOutFiles(), f("ckpt"): flagFiles["checkpoint-dir"].writes}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v under umask 077, want %v", path, fi.Mode().Perm(), want)
		}
		if names, ok := declared[filepath.Dir(path)]; ok && !matchAny(names, d.Name()) {
			t.Errorf("%s: not a name files.go declares for its folder (%q)", path, names)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 15 {
		t.Fatalf("found only %d files", files)
	}
}
