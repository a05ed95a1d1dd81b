# pplug build. `make` builds bin/pplug; `make test` runs every check CI runs.
#
# llama.cpp and ggml come from the Go module github.com/ollama/ollama (see
# third_party/README.md). `make deps` links their public headers into
# third_party/ so that cgo/ finds them; after that a plain `go build ./...`
# works too, but only builds made through this Makefile get the CPU flags below.

GO       ?= go
OLLAMA   := github.com/ollama/ollama
BIN      := bin
# PORTABLE=1 builds ggml for a generic CPU of the architecture instead of this one.
PORTABLE ?= 0

UNAME_M := $(shell uname -m)
ifeq ($(PORTABLE),1)
  ifeq ($(UNAME_M),x86_64)
    ARCH_FLAGS := -march=x86-64 -mtune=generic
  else
    ARCH_FLAGS :=
  endif
else
  ifeq ($(UNAME_M),arm64)
    ARCH_FLAGS := -mcpu=native
  else ifeq ($(UNAME_M),aarch64)
    ARCH_FLAGS := -mcpu=native
  else
    ARCH_FLAGS := -march=native
  endif
endif

# cgo flags reach every cgo package of the build, ollama's ggml-cpu included
# (its own #cgo lines carry no -march). The Go build cache keys on them, so
# switching PORTABLE rebuilds ggml once per setting.
export CGO_ENABLED  := 1
# NDEBUG as in llama.cpp release builds (GGML_ASSERT stays on).
export CGO_CPPFLAGS := -DNDEBUG
export CGO_CFLAGS   := -O3 $(ARCH_FLAGS)
export CGO_CXXFLAGS := -O3 $(ARCH_FLAGS)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/pplug/pplug/internal/buildinfo.Version=$(VERSION)

.PHONY: all build deps test test-short lint bench clean gpu demo

all: build

deps: third_party/llama.cpp third_party/ggml

third_party/llama.cpp third_party/ggml &: go.mod
	@dir=$$($(GO) list -m -f '{{.Dir}}' $(OLLAMA)) || { echo "cannot locate $(OLLAMA) in the module cache: run 'go mod download'"; exit 1; }; \
	if [ -z "$$dir" ] || [ ! -f "$$dir/llama/llama.cpp/include/llama.h" ]; then \
		$(GO) mod download $(OLLAMA) && dir=$$($(GO) list -m -f '{{.Dir}}' $(OLLAMA)); fi; \
	ln -sfn "$$dir/llama/llama.cpp" third_party/llama.cpp; \
	ln -sfn "$$dir/ml/backend/ggml/ggml" third_party/ggml; \
	echo "third_party -> $$dir"

build: deps
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pplug ./cmd/pplug

# The default model for a first run: the real pretrained stories260K (TinyStories).
ASSETS ?= ../shared/assets
demo: build
	$(BIN)/pplug generate -m $(ASSETS)/stories260K.gguf -p "Once upon a time" -n 64 --temp 0 --timings

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

test-short: deps
	$(GO) test ./...

# Everything CI runs: lint, the fast suite, the heavy suite and the race detector.
test: lint
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -tags heavy ./...
	$(GO) test -count=1 -race -run 'Concurrent|Race' ./llama/ ./persona/...

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./llama/

clean:
	rm -rf $(BIN) build third_party/llama.cpp third_party/ggml

# GPU kernels and ggml GPU backends (CMake; needs nvcc or macOS).
include gpu.mk
