package cgo

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// errGrammarRejected is AddGrammar's error when llama.cpp refused the
// grammar without an exception (it printed or logged the reason).
var errGrammarRejected = errors.New("llama.cpp could not parse the grammar")

// AddGrammar puts a GBNF grammar sampler (start symbol root) in the chain,
// constrained to m's vocabulary. The error carries llama.cpp's logged
// reason when there is one. The model must outlive the chain: the grammar
// keeps a pointer to its vocabulary.
func (s *Sampler) AddGrammar(m *Model, grammar, root string) error {
	cg := C.CString(grammar)
	defer C.free(unsafe.Pointer(cg))
	cr := C.CString(root)
	defer C.free(unsafe.Pointer(cr))
	var e C.pp_error
	var g *C.struct_llama_sampler
	reason := captureReason(func() { g = C.pp_guard_grammar_init(m.v, cg, cr, &e) })
	if err := caught(&e, "llama_sampler_init_grammar"); err != nil {
		return err
	}
	if g == nil {
		if reason != "" {
			return errors.New(reason)
		}
		return errGrammarRejected
	}
	s.add(g)
	s.grammar = g
	return nil
}
