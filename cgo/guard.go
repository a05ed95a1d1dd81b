package cgo

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// ErrCPPException wraps the message of a C++ exception that llama.cpp threw
// and guard.cpp caught before it could reach Go.
var ErrCPPException = errors.New("llama.cpp raised a C++ exception")

// ErrGrammarDeadEnd means the grammar allows no token at this point (or
// not the token given): accepting one would abort inside llama.cpp.
var ErrGrammarDeadEnd = errors.New("the grammar allows no token here")

// caught is the error of a guarded call named call, nil when it caught
// nothing.
func caught(e *C.pp_error, call string) error {
	if e.caught == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w: %s", call, ErrCPPException, C.GoString(&e.msg[0]))
}

// sampleError turns a PP_SAMPLE_* or PP_RC_EXCEPTION code into an error.
func sampleError(rc C.int32_t, e *C.pp_error, call string) error {
	switch rc {
	case C.PP_SAMPLE_OK:
		return nil
	case C.PP_SAMPLE_NO_LOGITS:
		return fmt.Errorf("%s: the row has no logits", call)
	case C.PP_SAMPLE_NONE:
		return fmt.Errorf("%s: the sampler chain selected no token", call)
	case C.PP_SAMPLE_DEAD_END:
		return fmt.Errorf("%s: %w", call, ErrGrammarDeadEnd)
	}
	if err := caught(e, call); err != nil {
		return err
	}
	return fmt.Errorf("%s failed (%d)", call, int(rc))
}
