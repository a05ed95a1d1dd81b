# cpubase.mk - the CPU baseline, included from the Makefile.
#
#   make cpu-baseline       builds llama.cpp as its own CMake build makes it at the
#                           pinned commit (ggml with OpenMP, -march=native, shared
#                           libraries, Release) and llama-cbench, a plain C benchmark
#                           loop over it (CMakeLists.txt: PPLUG_LLAMA_BASELINE), into
#                           $(CPU_BASELINE_DIR); prints the program's path. 10-25 minutes
#                           on 2 cores the first time (nice 19), seconds afterwards.
#   make cpu-baseline-path  prints where llama-cbench is (or will be)
#
# The folder lies outside the clone, keyed by the pinned module version and a
# hash of the build flags, the compiler and the CPU (-march=native), so every
# clone and worktree of the same pin shares one build. Its src link points at
# the clone that built last (CMake keeps one source folder per build folder).
# Variables: CPU_BASELINE_CACHE, CPU_BASELINE_JOBS (2), CMAKE.

CPU_BASELINE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pplug
CPU_BASELINE_JOBS  ?= 2
CPU_BASELINE_FLAGS := -DCMAKE_BUILD_TYPE=Release -DPPLUG_LLAMA_BASELINE=ON
# Evaluated once, and only by the targets below (make's memoizing idiom).
cpu_baseline_module = $(eval cpu_baseline_module := $$(shell $(GO) list -m -f '{{.Dir}}|{{.Version}}' $(OLLAMA) 2>/dev/null))$(cpu_baseline_module)
cpu_baseline_moddir = $(firstword $(subst |, ,$(cpu_baseline_module)))
cpu_baseline_ver    = $(or $(word 2,$(subst |, ,$(cpu_baseline_module))),unknown)
cpu_baseline_hash   = $(eval cpu_baseline_hash := $$(shell { echo '$(CPU_BASELINE_FLAGS)'; cc --version 2>/dev/null | head -n1; \
	c++ --version 2>/dev/null | head -n1; uname -m; grep -m2 -E '^(model name|flags)' /proc/cpuinfo 2>/dev/null; \
	sysctl -n machdep.cpu.brand_string 2>/dev/null; } | cksum | cut -d' ' -f1))$(cpu_baseline_hash)
CPU_BASELINE_DIR   ?= $(CPU_BASELINE_CACHE)/cpu-baseline-$(cpu_baseline_ver)-$(cpu_baseline_hash)
CPU_BASELINE_BIN   = $(CPU_BASELINE_DIR)/build/lib/pplug/llama-cbench

.PHONY: cpu-baseline cpu-baseline-path

cpu-baseline-path:
	@echo "$(CPU_BASELINE_BIN)"

cpu-baseline: deps
	@command -v $(CMAKE) >/dev/null || { echo "cpu-baseline: $(CMAKE) not found: install cmake (apt-get install cmake)"; exit 1; }
	@test -n "$(cpu_baseline_moddir)" || { echo "cpu-baseline: cannot locate $(OLLAMA): run 'go mod download'"; exit 1; }
	@mkdir -p "$(CPU_BASELINE_DIR)" && ln -sfn "$(CURDIR)" "$(CPU_BASELINE_DIR)/src"
	@echo "cpu-baseline: $(CPU_BASELINE_DIR) (first build: 10-25 minutes on 2 cores)" >&2
	nice -n 19 $(CMAKE) -S "$(CPU_BASELINE_DIR)/src" -B "$(CPU_BASELINE_DIR)/build" $(CPU_BASELINE_FLAGS) \
		-DPPLUG_LLAMA_DIR="$(cpu_baseline_moddir)/llama/llama.cpp" \
		-DPPLUG_GGML_DIR="$(cpu_baseline_moddir)/ml/backend/ggml/ggml" >"$(CPU_BASELINE_DIR)/configure.log" \
		|| { cat "$(CPU_BASELINE_DIR)/configure.log"; exit 1; }
	nice -n 19 $(CMAKE) --build "$(CPU_BASELINE_DIR)/build" -j $(CPU_BASELINE_JOBS) --target llama-cbench
	@echo "$(CPU_BASELINE_BIN)"
