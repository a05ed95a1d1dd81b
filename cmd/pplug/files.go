package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/persona/store"
)

// Every flag whose value is a file or a folder is declared here as what
// its command reads (an input) or writes (an output); conventions checks,
// before a command's action runs, that no output names one of the
// command's inputs or another of its outputs. Files are compared by
// identity, so symbolic links, hard links and other spellings of a path
// count as the same file.

// fileRole is what a command does with the path a flag names.
type fileRole int

const (
	notPath    fileRole = iota + 1 // the value is text, a name or a format
	inputFile                      // a file the command reads
	outputFile                     // a file the command creates or replaces
	outputDir                      // a folder the command writes files into
)

// fileFlag is the role of one flag.
type fileFlag struct {
	role fileRole
	// prefix marks a value that names a file (--json-schema @FILE); the
	// prefix is not part of the path, and other values name none.
	prefix string
	// beside are suffixes of the files read or written beside the path:
	// a plug's optimizer state (".opt"), SQLite's journal files.
	beside []string
	// writes are, for an outputDir, patterns (filepath.Match) of the
	// names the command writes into the folder.
	writes []string
	// urls: a database URL (postgres://...) names no file.
	urls bool
}

var (
	textFlag  = fileFlag{role: notPath}
	inFile    = fileFlag{role: inputFile}
	outFile   = fileFlag{role: outputFile}
	plugFile  = fileFlag{role: outputFile, beside: []string{".opt"}}
	cacheDir  = fileFlag{role: outputDir} // its files are named by content hashes
	databases = fileFlag{role: outputFile, beside: []string{"-wal", "-shm", "-journal"}, urls: true}
)

// flagFiles are the flags that mean the same in every command.
var flagFiles = map[string]fileFlag{
	"model": inFile, "encoder": inFile, "plug": inFile, "profile": inFile, "file": inFile,
	"grammar-file": inFile, "questions": inFile, "golds": inFile, "preds": inFile,
	"dev-questions": inFile, "dev-outputs": inFile, "outputs": inFile, "vocab": inFile,
	"json-schema":    {role: inputFile, prefix: "@"},
	"resume":         {role: inputFile, beside: []string{".opt"}},
	"report":         outFile,
	"profiles":       databases,
	"cache-dir":      cacheDir,
	"checkpoint-dir": {role: outputDir, writes: []string{"epoch-*.plug.gguf", "epoch-*.plug.gguf.opt"}},

	"prompt": textFlag, "system": textFlag, "chat-template": textFlag, "task": textFlag,
	"fields": textFlag, "question-id": textFlag, "pooling": textFlag, "device": textFlag, "plugin-device": textFlag,
	"split-mode": textFlag, "main-gpu": textFlag,
	"method": textFlag, "methods": textFlag, "labels": textFlag, "flash-attn": textFlag,
	"stop": textFlag, "reverse-prompt": textFlag, "grammar": textFlag, "host": textFlag, "api-key": textFlag,
	"alias": textFlag, "user": textFlag, "query": textFlag, "agg-items": textFlag,
	"embd-output-format": textFlag, "embd-separator": textFlag, "preset": textFlag,
	"arch": textFlag, "type": textFlag, "templates": textFlag, "query-prefix": textFlag, "layout": textFlag, "chat-turns": textFlag,
	"n-prompt": textFlag, "n-gen": textFlag, "pg": textFlag, "n-depth": textFlag,
	"threads": textFlag, "batch-size": textFlag, "ubatch-size": textFlag, "ctx-size": textFlag,
	"n-gpu-layers": textFlag, "poll": textFlag, "ids": textFlag,
}

// commandFiles are the flags whose meaning depends on the command (the
// output flags); a command's entry overrides flagFiles.
var commandFiles = map[string]map[string]fileFlag{
	"train":            {"output": plugFile},
	"plug init":        {"output": outFile},
	"synth":            {"output": outFile},
	"bench":            {"output": textFlag}, // the output format; results go to stdout
	"eval":             {"out": {role: outputDir, writes: evalOutFiles()}},
	"eval synth-users": {"output": {role: outputDir, writes: synthUsersFiles()}},
}

// evalOutFiles are the names eval writes into --out.
func evalOutFiles() []string {
	names := []string{"results.json", "results.md"}
	for _, m := range eval.AllMethods() {
		names = append(names, eval.OutputsFile(m))
	}
	return names
}

// synthUsersFiles are the names eval synth-users writes into -o.
func synthUsersFiles() []string {
	return []string{"train_questions.json", "train_outputs.json", "dev_questions.json", "dev_outputs.json",
		"test_questions.json", "test_outputs.json", "users.json"}
}

// fileFlagOf is the role of the flag name in the command cmd ("plug
// init"); false when the flag is not declared.
func fileFlagOf(cmd, name string) (fileFlag, bool) {
	if f, ok := commandFiles[cmd][name]; ok {
		return f, true
	}
	f, ok := flagFiles[name]
	return f, ok
}

// namedFile is a file or folder a flag's value names.
type namedFile struct {
	flag  string // the flag's name
	value string // the path as given
	path  string // value, or a file beside it
	role  fileRole
	spec  fileFlag
	at    place
}

func (f namedFile) String() string {
	if f.path == f.value {
		return fmt.Sprintf("--%s %s", f.flag, f.value)
	}
	return fmt.Sprintf("--%s %s (its %s)", f.flag, f.value, f.path)
}

// checkFiles refuses, as a usage error naming both flags, an output of
// the command that is one of its inputs or another of its outputs, or a
// folder it writes that holds such a file under a name it writes there.
func checkFiles(c *cli.Context, cmd string, flags []cli.Flag) error {
	ins, outs := commandFilesOf(c, cmd, flags)
	for i, o := range outs {
		for _, f := range ins {
			if err := clash(o, f); err != nil {
				return err
			}
		}
		for _, f := range outs[:i] {
			if f.flag == o.flag {
				continue
			}
			if err := clash(o, f); err != nil {
				return err
			}
			if err := clash(f, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// clash is the error of an output o that would overwrite the file f names.
func clash(o, f namedFile) error {
	what := "file"
	if o.role == outputDir {
		what = "folder"
	}
	switch {
	case o.at.same(f.at):
		return usagef("%v would overwrite %v: they are the same file; give --%s another %s", o, f, o.flag, what)
	case f.in(o):
		return usagef("%v would overwrite %v: the command writes %s into that folder; give --%s another folder or move the --%s file",
			o, f, filepath.Base(f.at.path), o.flag, f.flag)
	}
	return nil
}

// in reports whether f's file lies in the folder dir writes into, under a
// name it writes there.
func (f namedFile) in(dir namedFile) bool {
	if dir.role != outputDir || !matchAny(dir.spec.writes, filepath.Base(f.at.path)) {
		return false
	}
	return locate(filepath.Dir(f.at.path)).same(dir.at)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// commandFilesOf lists the files the command's set flags name: the
// inputs, and the outputs (files and folders), each with the files beside
// it.
func commandFilesOf(c *cli.Context, cmd string, flags []cli.Flag) (ins, outs []namedFile) {
	for _, fl := range flags {
		name := fl.Names()[0]
		spec, ok := fileFlagOf(cmd, name)
		if !ok || spec.role == notPath {
			continue
		}
		for _, v := range flagValues(c, fl) {
			path, ok := strings.CutPrefix(v, spec.prefix)
			if !ok || path == "" || path == "-" && spec.role == inputFile || spec.urls && store.IsURL(path) {
				continue
			}
			files := spec.expand(name, path)
			if spec.role == inputFile {
				ins = append(ins, files...)
			} else {
				outs = append(outs, files...)
			}
		}
	}
	return ins, outs
}

// expand is the path a flag names and the files beside it.
func (s fileFlag) expand(flag, path string) []namedFile {
	files := []namedFile{{flag: flag, value: path, path: path, role: s.role, spec: s, at: locate(path)}}
	for _, suffix := range s.beside {
		p := path + suffix
		files = append(files, namedFile{flag: flag, value: path, path: p, role: s.role, spec: s, at: locate(p)})
	}
	return files
}

// flagValues are the values given to a flag (on the command line or by
// its environment variable); a list flag's comma lists are split.
func flagValues(c *cli.Context, f cli.Flag) []string {
	name := f.Names()[0]
	if _, ok := f.(*cli.StringSliceFlag); ok {
		return listStrings(c, name)
	}
	if v := c.String(name); v != "" {
		return []string{v}
	}
	return nil
}

// place is where a path leads: the file's identity when it exists, and
// its absolute path with symbolic links resolved (for a file that does
// not exist yet, those of its folder).
type place struct {
	path string
	info fs.FileInfo
}

func locate(p string) place {
	if fi, err := os.Stat(p); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return place{path: absolute(p), info: fi}
	}
	dir, base := splitPath(p)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return place{path: absolute(filepath.Join(dir, base))}
}

// same reports whether a and b are one file: by identity when both
// exist, by path when neither does.
func (a place) same(b place) bool {
	if a.info != nil && b.info != nil {
		return os.SameFile(a.info, b.info)
	}
	return a.info == nil && b.info == nil && a.path == b.path
}

// splitPath splits p into its folder and its last name without cleaning
// the folder lexically ("link/.." is the parent of where link leads).
func splitPath(p string) (dir, base string) {
	sep := string(filepath.Separator)
	trimmed := strings.TrimRight(p, sep)
	if trimmed == "" {
		return p, ""
	}
	i := strings.LastIndex(trimmed, sep)
	switch {
	case i < 0:
		return ".", trimmed
	case i == 0:
		return sep, trimmed[1:]
	}
	return trimmed[:i], trimmed[i+1:]
}

func absolute(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}
