package llama

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/missing"
)

// ggufSummary is what validation learns about a file on the way.
type ggufSummary struct {
	size          int64
	version       int
	nTensors      int
	tokenEmbdType string
}

// validateGGUF checks a model file before llama.cpp sees it, so that each
// kind of bad input gets its own clear message: missing, a directory, empty,
// not GGUF, a header that does not parse, tensor data past the end.
func validateGGUF(path string) (ggufSummary, error) {
	var s ggufSummary
	if path == "" {
		return s, errors.New("no model path given (use -m FILE)")
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, missing.File(fmt.Errorf("file does not exist: %w", fs.ErrNotExist), missing.Model)
	case err != nil:
		return s, err
	case fi.IsDir():
		return s, errors.New("is a directory, not a GGUF file")
	case !fi.Mode().IsRegular():
		return s, errors.New("is not a regular file")
	case fi.Size() == 0:
		return s, errors.New("file is empty")
	}
	s.size = fi.Size()

	f, err := os.Open(path)
	if err != nil {
		return s, err
	}
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil {
		return s, fmt.Errorf("not a GGUF file: only %d bytes", s.size)
	}
	if !bytes.Equal(magic, []byte("GGUF")) {
		return s, fmt.Errorf("not a GGUF file (starts with %q, want \"GGUF\")", magic)
	}

	g, err := cgo.GGUFOpen(path)
	if err != nil {
		return s, fmt.Errorf("corrupt or truncated GGUF header: %w", err)
	}
	defer g.Free()
	s.version = g.Version()
	s.nTensors = g.NTensors()
	var end int64 // a file without tensors needs no data section
	for i := range s.nTensors {
		t := g.Tensor(i)
		if e := g.DataOffset() + t.Offset + t.Size; e > end {
			end = e
		}
		if t.Name == "token_embd.weight" {
			s.tokenEmbdType = t.Type.String()
		}
	}
	if end > s.size {
		return s, fmt.Errorf("truncated: tensor data ends at byte %d but the file has %d bytes", end, s.size)
	}
	return s, nil
}
