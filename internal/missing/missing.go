// Package missing words the error of an input file that is not there: the
// reader of each kind of file (model, plug, LaMP data, ...) says what the
// file is and how to get one, so that a first run that lacks a file tells
// the user the next step instead of only "no such file".
package missing

import (
	"errors"
	"fmt"
	"io/fs"
)

// File adds how to get the file to err when err says that a file does not
// exist (errors.Is(err, fs.ErrNotExist)); any other error, and nil, is
// returned as it is. The result still wraps err.
func File(err error, how string) error {
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fmt.Errorf("%w (%s)", err, how)
}

// How to get the files the commands read.
const (
	Model = "give the path of a GGUF model; ../shared/assets/stories260K.gguf is the one `make demo` uses, and `pplug synth` writes random-weight ones"
	Plug  = "make an untrained one with `pplug plug init -m MODEL -o FILE` or train one with `pplug train`; `make demo` trains build/demo/stories260K.plug.gguf"
	Vocab = "give a GGUF with a tokenizer: any model, or llama.cpp's vocabularies in ../shared/assets/llama-vocab (ggml-vocab-*.gguf)"
	LaMP  = "`pplug eval synth-users -o DIR` writes a LaMP-format set of synthetic users; LaMP's own files come from https://lamp-benchmark.github.io"
)
