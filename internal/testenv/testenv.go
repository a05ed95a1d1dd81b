// Package testenv finds the shared test assets (../shared/assets beside the
// repository, or $PPLUG_ASSETS) for tests and benchmarks.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// AssetsEnv overrides where the assets are.
const AssetsEnv = "PPLUG_ASSETS"

// RepoRoot walks up from the working directory to the folder with go.mod.
func RepoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// AssetsDir returns the assets folder: $PPLUG_ASSETS, else
// <repo>/../shared/assets.
func AssetsDir() string {
	if d := os.Getenv(AssetsEnv); d != "" {
		return d
	}
	if root, ok := RepoRoot(); ok {
		return filepath.Join(filepath.Dir(root), "shared", "assets")
	}
	return filepath.Join("..", "shared", "assets")
}

// Asset returns the path of an asset file and fails the test when it is
// missing: the assets are part of the test environment, so a missing one is
// a broken setup, not a reason to skip.
func Asset(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(AssetsDir(), rel)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("test asset %s not found (%v): put ../shared/assets beside the repository or set %s", rel, err, AssetsEnv)
	}
	return p
}

// Stories260K is the real pretrained tiny Llama used across tests.
func Stories260K(tb testing.TB) string { return Asset(tb, "stories260K.gguf") }

// BertVocab is the vocabulary-only BERT/BGE GGUF.
func BertVocab(tb testing.TB) string { return Asset(tb, "llama-vocab/ggml-vocab-bert-bge.gguf") }

// Phi3Vocab is the vocabulary-only Llama SentencePiece GGUF with a chat template.
func Phi3Vocab(tb testing.TB) string { return Asset(tb, "llama-vocab/ggml-vocab-phi-3.gguf") }
