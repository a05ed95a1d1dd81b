// Package buildinfo carries the version stamped in at link time.
package buildinfo

import (
	"runtime/debug"

	"github.com/pplug/pplug/llama"
)

// Version is set by the Makefile (-ldflags -X); "dev" otherwise.
var Version = "dev"

// LlamaCppCommit is the pinned llama.cpp commit.
const LlamaCppCommit = llama.LlamaCppCommit

// LlamaCppSource is the Go module that provides llama.cpp and ggml.
const LlamaCppSource = llama.LlamaCppSource

// GoVersion is the Go toolchain of the build.
func GoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}
