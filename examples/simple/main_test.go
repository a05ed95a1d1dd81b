package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// TestSimple runs the example on stories260K with a fresh plug and Lily's
// profile: it streams a non-empty answer, the same one twice (greedy).
func TestSimple(t *testing.T) {
	model := testenv.Stories260K(t)
	root, ok := testenv.RepoRoot()
	if !ok {
		t.Fatal("no repository root")
	}
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	var a, b bytes.Buffer
	if err := run(context.Background(), &a, model, "", prof, "Once upon a time", 16); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), &b, model, "", prof, "Once upon a time", 16); err != nil {
		t.Fatal(err)
	}
	if a.Len() == 0 || a.String() != b.String() {
		t.Fatalf("answers %q and %q: want one non-empty greedy text", a.String(), b.String())
	}
	if err := run(context.Background(), &a, model, "", filepath.Join(t.TempDir(), "none.json"), "x", 4); err == nil {
		t.Fatal("a missing profile gave no error")
	}
}
