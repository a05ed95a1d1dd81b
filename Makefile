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

# OPENMP=1 builds ggml's CPU backend with OpenMP, as llama.cpp's CMake build does by
# default (GGML_OPENMP=ON): the compiler's OpenMP runtime keeps the CPU workers, and
# they wait the way it does (spin a while, then sleep in the kernel), which keeps
# decoding fast beside other busy processes (README, "The CPU baseline"). OPENMP=0
# uses ggml's own persistent threadpools instead (what a plain `go build` gets).
# The default, auto, is 1 where the C compiler builds an OpenMP program (gcc with
# libgomp: Debian's gcc has it), else 0 (Apple's clang).
OPENMP ?= auto
ifeq ($(OPENMP),auto)
  override OPENMP := $(shell printf '\043include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n' | \
	$(or $(CC),cc) -fopenmp -x c - -o /dev/null >/dev/null 2>&1 && echo 1 || echo 0)
endif
ifeq ($(OPENMP),1)
  OPENMP_CPPFLAGS := -DGGML_USE_OPENMP
  OPENMP_FLAGS    := -fopenmp
else ifneq ($(OPENMP),0)
  $(error OPENMP=$(OPENMP): want 1, 0 or auto)
endif

# cgo flags reach every cgo package of the build, ollama's ggml-cpu included
# (its own #cgo lines carry no -march). The Go build cache keys on them, so
# switching PORTABLE or OPENMP rebuilds ggml once per setting.
export CGO_ENABLED  := 1
# NDEBUG as in llama.cpp release builds (GGML_ASSERT stays on).
export CGO_CPPFLAGS := $(strip -DNDEBUG $(OPENMP_CPPFLAGS))
export CGO_CFLAGS   := $(strip -O3 $(ARCH_FLAGS) $(OPENMP_FLAGS))
export CGO_CXXFLAGS := $(strip -O3 $(ARCH_FLAGS) $(OPENMP_FLAGS))
ifeq ($(OPENMP),1)
  export CGO_LDFLAGS := $(strip $(CGO_LDFLAGS) $(OPENMP_FLAGS))
endif

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/pplug/pplug/internal/buildinfo.Version=$(VERSION)

.PHONY: all build deps ci test test-short lint bench clean gpu demo

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
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/pplug ./cmd/pplug

# The default model for a first run: the real pretrained stories260K (TinyStories).
ASSETS ?= ../shared/assets
DEMO   := build/demo
DEMO_Q := 2000
# DEMO_RETRIEVE_K=2 also trains PPlug + retrieval (the top 2 BM25 history items
# before the rows: pplug+bm25, the best method measured, docs/text-quality.md) at
# twice the training time, into its own plug; the showcase then answers with it.
DEMO_RETRIEVE_K ?= 0
ifeq ($(DEMO_RETRIEVE_K),0)
  DEMO_PLUG    := $(DEMO)/stories260K.plug.gguf
  DEMO_METHODS := none,bm25,pplug
  DEMO_TRAIN_K :=
else
  DEMO_PLUG    := $(DEMO)/stories260K-k$(DEMO_RETRIEVE_K).plug.gguf
  DEMO_METHODS := none,bm25,pplug,pplug+bm25
  DEMO_TRAIN_K := --retrieve-k $(DEMO_RETRIEVE_K)
endif
DEMO_USERS := 3
# The demo's answers and checks run at one thread: with stories260K's tiny
# matrices ggml's second thread gains little on a quiet machine, and on a busy
# one its spinning at every barrier made eval nll 60 times slower (45 s against
# 0.7 s for 12 questions beside other jobs).
DEMO_THREADS ?= 1
DEMO_EVAL  := --task lamp7 --questions $(DEMO)/users/test_questions.json --golds $(DEMO)/users/test_outputs.json \
	-m $(ASSETS)/stories260K.gguf --plug $(DEMO_PLUG) --cache-dir $(DEMO)/cache
# demo: trains (once, about 5 minutes on 2 cores) a plug for stories260K on synthetic
# users, then shows what it does: three held-out users (never seen in training), each
# answered with their persona (the plug's method: pplug, or pplug+bm25 with
# DEMO_RETRIEVE_K) and without it, next to the gold answer; why for the first of them
# (the history items its persona weighs most); the personalization check on all
# held-out users and the text methods on 40 of their questions.
demo: build $(DEMO_PLUG)
	@echo "== $(DEMO_USERS) held-out users: with their persona, without it (none), and the gold answer"
	$(BIN)/pplug eval show $(DEMO_EVAL) --users $(DEMO_USERS) -n 48 -t $(DEMO_THREADS)
	@echo "== user $(DEMO_Q) again: the history items its persona weighs most"
	$(BIN)/pplug generate -m $(ASSETS)/stories260K.gguf -n 48 --temp 0 \
		--profile $(DEMO)/users/test_questions.json --question-id $(DEMO_Q) --task lamp7 \
		--plug $(DEMO_PLUG) --explain --explain-k 3 --cache-dir $(DEMO)/cache --timings -t $(DEMO_THREADS)
	@echo "== gold-continuation NLL of the held-out users: own persona vs none vs another user's"
	$(BIN)/pplug eval nll $(DEMO_EVAL) -t $(DEMO_THREADS)
	@echo "== generated text of the held-out users: $(DEMO_METHODS) (40 questions)"
	$(BIN)/pplug eval $(DEMO_EVAL) --methods $(DEMO_METHODS) --limit 40 -t $(DEMO_THREADS) --out $(DEMO)/eval

# The demo plug (issue 10's recipe): pplug train for 5 epochs on the 300 training users
# of `pplug eval synth-users --seed 1 --users 400`, stories260K as LLM and encoder,
# 8 instruction rows, 64 persona rows and a learned EOS bias (stories260K was
# pretrained without EOS, so without it no output ever ends).
# A build/demo of an older recipe lacks the stamp: its plugs and users are remade.
DEMO_STAMP := $(DEMO)/.recipe-2
$(DEMO_STAMP):
	@mkdir -p $(DEMO)
	rm -rf $(DEMO)/users $(DEMO)/*.plug.gguf $(DEMO)/*.plug.gguf.opt
	@touch $@
$(DEMO)/users/test_questions.json: $(DEMO_STAMP)
	@$(MAKE) --no-print-directory build
	$(BIN)/pplug eval synth-users -o $(DEMO)/users --seed 1 --users 400
$(DEMO_PLUG): $(DEMO_STAMP) $(DEMO)/users/test_questions.json
	@$(MAKE) --no-print-directory build
	$(BIN)/pplug train -m $(ASSETS)/stories260K.gguf --task lamp7 \
		--questions $(DEMO)/users/train_questions.json --outputs $(DEMO)/users/train_outputs.json \
		--dev-questions $(DEMO)/users/dev_questions.json --dev-outputs $(DEMO)/users/dev_outputs.json \
		--n-instruction 8 --n-persona 64 --eos-bias --epochs 5 --batch 16 --lr 1e-2 --augment 2 $(DEMO_TRAIN_K) \
		--seed 1 -t 2 --cache-dir $(DEMO)/cache -o $@

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags heavy ./...
	$(GO) vet -tags vulkan ./cmd/pplug/ ./train/
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags vulkan ./cmd/pplug/ ./train/

test-short: deps
	$(GO) test ./...

# What CI runs (.ci/run): the Debian packages the tests and the Vulkan backend need
# (scripts/install-deps.sh --vulkan, only those missing), make test, then the
# CPU-vs-Vulkan parity test on lavapipe (its backend build is cached per machine).
ci: deps
	scripts/install-deps.sh --vulkan
	$(MAKE) --no-print-directory test
	$(MAKE) --no-print-directory test-vulkan

# Lint, the fast suite, the heavy suite and the race detector.
# Each suite sets its own -timeout: go test's default of 10 minutes per package
# is too short for the heavy suite (and the race build) on a slow or loaded machine.
TEST_TIMEOUT  ?= 15m
HEAVY_TIMEOUT ?= 30m
# The PostgreSQL store's tests start Debian's postgresql (internal/pgtest);
# under make test a missing one fails them instead of skipping.
test: export PPLUG_REQUIRE_POSTGRES = 1
test: lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -timeout $(HEAVY_TIMEOUT) -tags heavy ./...
	$(GO) test -count=1 -timeout $(HEAVY_TIMEOUT) -race -run 'Concurrent|Race' ./llama/ ./persona/... ./kernels/

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./llama/

clean:
	rm -rf $(BIN) build third_party/llama.cpp third_party/ggml

# GPU kernels and ggml GPU backends (CMake; needs nvcc or macOS).
include gpu.mk
include cpubase.mk
