package cgo

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import "unsafe"

// AddGrammar puts a GBNF grammar sampler (start symbol root) in the chain,
// constrained to m's vocabulary. It reports false when llama.cpp could not
// parse the grammar (llama.cpp logs the reason). The model must outlive the
// chain: the grammar keeps a pointer to its vocabulary.
func (s *Sampler) AddGrammar(m *Model, grammar, root string) bool {
	cg := C.CString(grammar)
	defer C.free(unsafe.Pointer(cg))
	cr := C.CString(root)
	defer C.free(unsafe.Pointer(cr))
	g := C.llama_sampler_init_grammar(m.v, cg, cr)
	if g == nil {
		return false
	}
	s.add(g)
	return true
}
