// Command archreport prints the evidence issue 24's closing note asks for,
// for the module in a folder: the import graph of the module's own packages
// and the largest functions of its non-test files.
//
//	go run ./scripts/archreport [-dir DIR] [-top N]
//
// scripts/arch-report.sh runs it on a git revision.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// pkg is the part of `go list -json` the report reads.
type pkg struct {
	ImportPath string
	Dir        string
	Module     *struct{ Path string }
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
}

// fn is one function declaration and its size.
type fn struct {
	Name  string
	Pos   string
	Lines int
}

func main() {
	dir := flag.String("dir", ".", "root of the module to report on")
	top := flag.Int("top", 10, "how many of the largest functions to print")
	flag.Parse()
	if err := run(os.Stdout, *dir, *top); err != nil {
		fmt.Fprintln(os.Stderr, "archreport:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, dir string, top int) error {
	if top < 1 {
		return fmt.Errorf("-top %d: give a count of at least 1", top)
	}
	pkgs, module, err := listPackages(dir)
	if err != nil {
		return err
	}
	printGraph(w, pkgs, module)
	fns, err := functions(dir, pkgs)
	if err != nil {
		return err
	}
	printLargest(w, fns, top)
	return nil
}

// listPackages runs go list in dir and returns the module's packages.
func listPackages(dir string) ([]pkg, string, error) {
	cmd := exec.Command("go", "list", "-e", "-json", "./...")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("go list in %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, "", fmt.Errorf("reading go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 || pkgs[0].Module == nil {
		return nil, "", fmt.Errorf("%s: no module packages found; give the root of a Go module", dir)
	}
	return pkgs, pkgs[0].Module.Path, nil
}

// printGraph prints each package with the module packages it imports.
func printGraph(w io.Writer, pkgs []pkg, module string) {
	edges := 0
	fmt.Fprintf(w, "# import graph of %s (non-test imports)\n", module)
	for _, p := range pkgs {
		var own []string
		for _, imp := range p.Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				own = append(own, short(imp, module))
			}
			if imp == "C" {
				own = append(own, "C")
			}
		}
		edges += len(own)
		fmt.Fprintf(w, "%s -> %s\n", short(p.ImportPath, module), strings.Join(own, " "))
	}
	fmt.Fprintf(w, "# %d packages, %d edges (C = cgo)\n\n", len(pkgs), edges)
}

func short(path, module string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

// functions parses the packages' non-test Go files and measures every
// function declaration, in lines from func to the closing brace.
func functions(dir string, pkgs []pkg) ([]fn, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	fset := token.NewFileSet()
	var fns []fn
	for _, p := range pkgs {
		for _, name := range append(append([]string{}, p.GoFiles...), p.CgoFiles...) {
			path := filepath.Join(p.Dir, name)
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return nil, fmt.Errorf("parsing %s: %w", path, err)
			}
			fns = append(fns, declared(fset, f, root)...)
		}
	}
	return fns, nil
}

func declared(fset *token.FileSet, f *ast.File, root string) []fn {
	var fns []fn
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
		rel, err := filepath.Rel(root, start.Filename)
		if err != nil {
			rel = start.Filename
		}
		fns = append(fns, fn{
			Name:  funcName(fd),
			Pos:   fmt.Sprintf("%s:%d", filepath.ToSlash(rel), start.Line),
			Lines: end.Line - start.Line + 1,
		})
	}
	return fns
}

// funcName is Name or (Recv).Name for a method.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch r := t.(type) {
	case *ast.Ident:
		return r.Name + "." + fd.Name.Name
	case *ast.IndexExpr:
		return fmt.Sprint(r.X) + "." + fd.Name.Name
	case *ast.IndexListExpr:
		return fmt.Sprint(r.X) + "." + fd.Name.Name
	}
	return fd.Name.Name
}

func printLargest(w io.Writer, fns []fn, top int) {
	sort.SliceStable(fns, func(i, j int) bool {
		if fns[i].Lines != fns[j].Lines {
			return fns[i].Lines > fns[j].Lines
		}
		return fns[i].Pos < fns[j].Pos
	})
	fmt.Fprintf(w, "# %d largest of %d functions (lines, non-test files)\n", min(top, len(fns)), len(fns))
	for _, f := range fns[:min(top, len(fns))] {
		fmt.Fprintf(w, "%5d  %-40s %s\n", f.Lines, f.Name, f.Pos)
	}
}
