package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// flagMention is a flag name in a message: "-n", "--max-body", after a
// start, a space, a parenthesis or a slash.
var flagMention = regexp.MustCompile(`(?:^|[\s(/'])(--?[a-z][a-z0-9-]*)`)

// The server's messages (and serve's) tell users which serve flag to
// change: every flag they name must be one of serve's (a message once
// named --max-tokens, which does not exist).
func TestServerMessagesNameServeFlags(t *testing.T) {
	known := map[string]bool{}
	for _, f := range serveCommand().Flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "server", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no server sources: %v", err)
	}
	files = append(files, "serve.go")
	checked := 0
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		for _, lit := range stringLiterals(t, path) {
			for _, m := range flagMention.FindAllStringSubmatch(lit, -1) {
				checked++
				if name := strings.TrimLeft(m[1], "-"); !known[name] {
					t.Errorf("%s: %q names %s, which is not a flag of pplug serve", filepath.Base(path), lit, m[1])
				}
			}
		}
	}
	if checked < 3 {
		t.Fatalf("found only %d flag names in the server's messages: the pattern is broken", checked)
	}
}

// stringLiterals returns the values of a Go file's string literals.
func stringLiterals(t *testing.T, path string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				out = append(out, s)
			}
		}
		return true
	})
	return out
}
