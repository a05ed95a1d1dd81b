//go:build !((linux || darwin) && (amd64 || arm64))

package kernels

import (
	"fmt"
	"log/slog"
)

// openNative: the GPU libraries are loaded with purego, which this package
// only uses on linux and darwin (amd64, arm64).
func openNative(backend string, index int, opts Options, log *slog.Logger) (Backend, error) {
	return nil, fmt.Errorf("kernels: %s backend is not available on %s", backend, platformName())
}
