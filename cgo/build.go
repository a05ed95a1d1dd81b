// Package cgo is the only place in pplug that speaks C to llama.cpp and ggml.
//
// It is a thin layer: Go types in and out, C memory owned by the types that
// allocate it, no policy. Lifetimes, locking, options and errors worth showing
// to a user live one level up, in package llama (and persona for plug files).
//
// llama.cpp and ggml are compiled from the cgo packages that the Go module
// github.com/ollama/ollama vendors; see third_party/README.md. Their public
// headers are reached through third_party/llama.cpp and third_party/ggml,
// links that `make deps` creates into the module cache.
//
// llama.cpp is C++ and throws exceptions; a C++ exception that unwinds into
// a cgo frame terminates the process. Every call that can throw goes
// through guard.cpp, which catches it and returns its message (see
// ErrCPPException); the C helpers are compiled with -fexceptions so that an
// exception may pass through them on its way to the guard.
package cgo

/*
#cgo CPPFLAGS: -I${SRCDIR}/../third_party/llama.cpp/include -I${SRCDIR}/../third_party/ggml/include
#cgo CFLAGS: -std=c11 -fexceptions
#cgo CXXFLAGS: -std=c++17
#cgo linux LDFLAGS: -lm -ldl
#if !__has_include("llama.h")
#error "llama.h not found: run 'make deps' (it links third_party/llama.cpp and third_party/ggml into the Go module cache)"
#endif
*/
import "C"

import (
	// The compiled llama.cpp and ggml (CPU backend) libraries.
	_ "github.com/ollama/ollama/llama/llama.cpp/src"
	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src"

	// ggml-cpu's AMX kernels, which the module's cgo packages leave out.
	_ "github.com/pplug/pplug/cgo/amx"
)

// LlamaCppCommit is the llama.cpp commit vendored by the pinned ollama module.
const LlamaCppCommit = "ec98e2002"

// OllamaModule is the module (and version) that provides llama.cpp and ggml.
const OllamaModule = "github.com/ollama/ollama v0.17.4"
