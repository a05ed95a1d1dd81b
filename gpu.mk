# gpu.mk - the GPU side of the build, included from the Makefile.
#
#   make gpu            every GPU library for which a toolkit is present:
#                         nvcc  -> libpplug_kernels_cuda.so, libggml-cuda.so (+ libggml-base.so)
#                         macOS -> libpplug_kernels_metal.dylib, libggml-metal.so (+ libggml-base.dylib)
#                       into $(GPU_BUILD)/lib/pplug
#   make gpu-kernels    only the pplug kernel libraries (seconds, not the long ggml-cuda build)
#   make gpu-install    copy the libraries to $(GPU_PREFIX)/lib/pplug
#   make gpu-test       the kernels package's GPU parity tests against the built library
#   make gpu-check-prep bin/pplug and the test binaries scripts/gpu-check.sh runs on a GPU machine
#   make vulkan         ggml's Vulkan backend: libggml-vulkan.so (+ libggml-base.so) next to
#                       bin/pplug, built by scripts/build-vulkan.sh from a patched copy of the
#                       pinned sources and cached in ~/.cache/pplug/vulkan-<key>/ (packages:
#                       scripts/install-deps.sh --vulkan)
#   make test-vulkan    TestVulkanParity, TestVulkanTraining and TestVulkanArchs (-tags
#                       vulkan): CPU vs the first Vulkan device (lavapipe on a machine
#                       without a GPU), PPLUG_REQUIRE_VULKAN=1 so nothing skips; the
#                       device flags (TestVulkanDeviceFlags); the plug-in's ggml graph
#                       (TestGraph*) and the commands (TestVulkanCommands, -tags vulkan)
#                       on that device
#
# Variables: CUDA_ARCH (default: the visible GPU's compute capability, else 90),
# GPU_GGML=0 (skip ggml's backends), GPU_BUILD, GPU_PREFIX, GPU_JOBS, CMAKE, NVCC,
# VULKAN_JOBS, VULKAN_NICE (e.g. 19 on a shared machine), VK_DEVICES (the
# GGML_VK_VISIBLE_DEVICES of test-vulkan when the environment sets none; default 0).

GPU_BUILD  ?= build/gpu
GPU_PREFIX ?= dist
GPU_GGML   ?= 1
CMAKE      ?= cmake
GPU_JOBS   ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
GPU_OS     := $(shell uname -s)

ifeq ($(origin NVCC),undefined)
  NVCC := $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
endif

# CUDA architecture: the first visible GPU's compute capability (9.0 -> 90), else 90.
ifeq ($(origin CUDA_ARCH),undefined)
  CUDA_ARCH := $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -E '^[0-9]+\.[0-9]+$$' | head -n1 | tr -d .)
  ifeq ($(CUDA_ARCH),)
    CUDA_ARCH := 90
  endif
endif

GPU_CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=Release
GPU_TARGETS :=
ifneq ($(NVCC),)
  GPU_CMAKE_FLAGS += -DPPLUG_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCH)
  GPU_TARGETS += pplug_kernels_cuda
  ifeq ($(GPU_GGML),1)
    GPU_CMAKE_FLAGS += -DPPLUG_GGML_CUDA=ON
  else
    GPU_CMAKE_FLAGS += -DPPLUG_GGML_CUDA=OFF
  endif
endif
ifeq ($(GPU_OS),Darwin)
  GPU_CMAKE_FLAGS += -DPPLUG_METAL=ON
  GPU_TARGETS += pplug_kernels_metal
  ifeq ($(GPU_GGML),1)
    GPU_CMAKE_FLAGS += -DPPLUG_GGML_METAL=ON
  else
    GPU_CMAKE_FLAGS += -DPPLUG_GGML_METAL=OFF
  endif
endif

.PHONY: gpu gpu-configure gpu-kernels gpu-install gpu-test gpu-check-prep vulkan test-vulkan

gpu-configure: $(if $(filter 1,$(GPU_GGML)),deps)
	@if [ -z "$(GPU_TARGETS)" ]; then echo "gpu: no GPU toolkit found (nvcc, or macOS for Metal); nothing to build"; exit 0; fi; \
	command -v $(CMAKE) >/dev/null || { echo "gpu: $(CMAKE) not found"; exit 1; }; \
	echo "gpu: $(GPU_TARGETS)$(if $(NVCC), (CUDA arch $(CUDA_ARCH)),)$(if $(filter 1,$(GPU_GGML)), + ggml backends,)"; \
	$(CMAKE) -S . -B $(GPU_BUILD) $(GPU_CMAKE_FLAGS)

gpu: gpu-configure
	@if [ -n "$(GPU_TARGETS)" ]; then $(CMAKE) --build $(GPU_BUILD) -j $(GPU_JOBS) && ls -l $(GPU_BUILD)/lib/pplug; fi

gpu-kernels: gpu-configure
	@if [ -n "$(GPU_TARGETS)" ]; then $(CMAKE) --build $(GPU_BUILD) -j $(GPU_JOBS) --target $(GPU_TARGETS); fi

gpu-install: gpu
	@if [ -n "$(GPU_TARGETS)" ]; then $(CMAKE) --install $(GPU_BUILD) --prefix $(GPU_PREFIX); fi

gpu-test: gpu-kernels
	PPLUG_KERNELS_DIR=$(abspath $(GPU_BUILD))/lib/pplug PPLUG_REQUIRE_GPU=1 $(GO) test -count=1 -v -run 'GPU' ./kernels/

# What scripts/gpu-check.sh runs on a GPU machine without Go: bin/pplug and
# the test binaries in build/gpu-check-bin/. kernels.test has no cgo (only
# libc's dlopen is imported, so it runs on older distributions too); the
# others link llama.cpp: the plug-in's ggml graph suite, TestVulkanParity and
# the commands on Vulkan (-tags vulkan).
GPU_CHECK_BIN := build/gpu-check-bin
gpu-check-prep: build
	@mkdir -p $(GPU_CHECK_BIN)
	CGO_ENABLED=0 $(GO) test -c -o $(GPU_CHECK_BIN)/kernels.test ./kernels/
	$(GO) test -c -o $(GPU_CHECK_BIN)/kernels-graph.test ./kernels/
	$(GO) test -c -o $(GPU_CHECK_BIN)/llama.test ./llama/
	$(GO) test -c -tags vulkan -o $(GPU_CHECK_BIN)/pplug-vulkan.test ./cmd/pplug/

VULKAN_JOBS ?= $(GPU_JOBS)
VULKAN_NICE ?=
VK_DEVICES  ?= 0

vulkan: build
	VULKAN_JOBS=$(VULKAN_JOBS) VULKAN_NICE=$(VULKAN_NICE) CMAKE=$(CMAKE) scripts/build-vulkan.sh $(BIN)

# ggml skips CPU-type Vulkan devices (lavapipe) unless GGML_VK_VISIBLE_DEVICES names them.
# The plug-in's ggml graph runs the kernels suite on the first Vulkan device
# (Vulkan0) against the float64 oracle, lavapipe on one thread as above; then
# pplug generate, chat, serve and embed run with -ngl 99 on it against the
# CPU (cmd/pplug/vulkan_test.go, -tags vulkan).
test-vulkan: vulkan
	GGML_VK_VISIBLE_DEVICES=$${GGML_VK_VISIBLE_DEVICES:-$(VK_DEVICES)} PPLUG_BACKENDS_DIR=$(abspath $(BIN)) \
		PPLUG_REQUIRE_VULKAN=1 $(GO) test -count=1 -timeout 15m -v -run '^TestVulkanParity$$' ./llama/
	GGML_VK_VISIBLE_DEVICES=$${GGML_VK_VISIBLE_DEVICES:-$(VK_DEVICES)} PPLUG_BACKENDS_DIR=$(abspath $(BIN)) \
		PPLUG_REQUIRE_VULKAN=1 $(GO) test -count=1 -timeout 15m -v -run '^TestVulkanDeviceFlags$$' ./cmd/pplug/
	GGML_VK_VISIBLE_DEVICES=$${GGML_VK_VISIBLE_DEVICES:-$(VK_DEVICES)} PPLUG_BACKENDS_DIR=$(abspath $(BIN)) \
		PPLUG_REQUIRE_VULKAN=1 $(GO) test -count=1 -timeout 15m -v -tags vulkan -run '^TestVulkan(Training|Archs)$$' ./train/
	GGML_VK_VISIBLE_DEVICES=$${GGML_VK_VISIBLE_DEVICES:-$(VK_DEVICES)} PPLUG_BACKENDS_DIR=$(abspath $(BIN)) \
		LP_NUM_THREADS=$${LP_NUM_THREADS:-1} PPLUG_GRAPH_DEVICE=Vulkan0 \
		$(GO) test -count=1 -timeout 15m -v -run '^TestGraph' ./kernels/
	GGML_VK_VISIBLE_DEVICES=$${GGML_VK_VISIBLE_DEVICES:-$(VK_DEVICES)} PPLUG_BACKENDS_DIR=$(abspath $(BIN)) \
		PPLUG_REQUIRE_VULKAN=1 $(GO) test -tags vulkan -count=1 -timeout 20m -v -run '^TestVulkanCommands$$' ./cmd/pplug/
