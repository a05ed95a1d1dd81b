#!/usr/bin/env bash
# scripts/build-vulkan.sh - build ggml's Vulkan backend (libggml-vulkan.so and the
# libggml-base.so it links) from the pinned ggml sources, cached outside the clone.
#
#   scripts/build-vulkan.sh [DEST]      (make vulkan: DEST = bin, next to bin/pplug)
#
# The sources are the folder `make deps` links as third_party/ggml (module
# github.com/ollama/ollama, read-only in the module cache). The script copies it,
# applies third_party/patches/ggml-vulkan-debian12.patch and builds with the
# project's CMakeLists.txt (PPLUG_GGML_VULKAN=ON) in
#
#   ${PPLUG_VULKAN_CACHE:-${XDG_CACHE_HOME:-~/.cache}/pplug}/vulkan-<key>/
#
# where <key> hashes the pinned module version and llama.cpp commit, the patch,
# CMakeLists.txt, the CMake flags and the compiler and glslc versions. A finished
# build is reused (seconds); an interrupted one resumes. A lock file serialises
# builds of one key. DEST receives copies of the libraries.
#
# Environment: VULKAN_JOBS (default: nproc), VULKAN_NICE (a niceness for the
# compile, e.g. 19 on a shared machine), CMAKE, PPLUG_VULKAN_CACHE.
# Packages: scripts/install-deps.sh --vulkan. Exit status 2: a tool is missing.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-$ROOT/bin}
CMAKE=${CMAKE:-cmake}
JOBS=${VULKAN_JOBS:-$(nproc 2>/dev/null || echo 2)}
PATCH_FILE=$ROOT/third_party/patches/ggml-vulkan-debian12.patch
FLAGS=(-DCMAKE_BUILD_TYPE=Release -DPPLUG_GGML_VULKAN=ON)
START=$(date +%s)

log() { printf '[vulkan +%ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { printf 'build-vulkan: %s\n' "$1" >&2; exit "${2:-1}"; }

# need_tools stops with the package to install when a build tool is missing.
need_tools() {
	local hint="run scripts/install-deps.sh --vulkan (Debian/Ubuntu) or install"
	command -v "$CMAKE" >/dev/null || die "$CMAKE not found: $hint cmake" 2
	command -v glslc >/dev/null || die "glslc not found: $hint glslc" 2
	command -v patch >/dev/null || die "patch not found: $hint patch" 2
	command -v flock >/dev/null || die "flock not found: $hint util-linux" 2
	[ -f /usr/include/vulkan/vulkan.hpp ] || pkg-config --exists vulkan 2>/dev/null ||
		die "Vulkan headers not found: $hint libvulkan-dev" 2
}

# ggml_dir prints the pinned ggml sources (make deps links them).
ggml_dir() {
	local d
	d=$(readlink -f "$ROOT/third_party/ggml" 2>/dev/null) || true
	[ -n "$d" ] && [ -f "$d/src/ggml-vulkan/ggml-vulkan.cpp" ] ||
		die "ggml sources with ggml-vulkan not found at third_party/ggml: run 'make deps'"
	printf '%s\n' "$d"
}

# key_text lists everything the build depends on besides the sources, which
# the pinned module version identifies.
key_text() {
	local mod commit
	mod=$(cd "$ROOT" && go list -m -f '{{.Path}}@{{.Version}}' github.com/ollama/ollama 2>/dev/null) ||
		mod=$(grep -m1 'github.com/ollama/ollama ' "$ROOT/go.mod")
	commit=$(sed -n 's/^const LlamaCppCommit = "\(.*\)"/\1/p' "$ROOT/cgo/build.go")
	printf 'module %s\nllama.cpp %s\n' "$mod" "$commit"
	printf 'patch %s\n' "$(sha256sum <"$PATCH_FILE" | cut -c1-64)"
	printf 'cmakelists %s\n' "$(sha256sum <"$ROOT/CMakeLists.txt" | cut -c1-64)"
	printf 'flags %s\n' "${FLAGS[*]}"
	printf 'cxx %s\n' "$(c++ --version 2>/dev/null | head -n1)"
	printf 'glslc %s\n' "$(glslc --version 2>/dev/null | head -n1)"
}

# prepare_sources copies the module's ggml folder and the project's CMake file
# into the cache and patches the copy.
prepare_sources() {
	local cache=$1 src
	src=$(ggml_dir)
	rm -rf "$cache/src" "$cache/project"
	mkdir -p "$cache/project"
	cp -R "$src" "$cache/src"
	chmod -R u+w "$cache/src"
	(cd "$cache/src" && patch -p1 --forward --batch --quiet <"$PATCH_FILE") ||
		die "patch $PATCH_FILE does not apply to $src: update it for the pinned sources"
	cp "$ROOT/CMakeLists.txt" "$cache/project/"
	touch "$cache/.sources"
}

# build_libs configures and compiles ggml-vulkan and ggml-base into $cache/lib.
build_libs() {
	local cache=$1 nice=()
	[ -f "$cache/.sources" ] || prepare_sources "$cache"
	[ -n "${VULKAN_NICE:-}" ] && nice=(nice -n "$VULKAN_NICE")
	log "configure (log: $cache/build.log)"
	"$CMAKE" -S "$cache/project" -B "$cache/build" "${FLAGS[@]}" \
		-DPPLUG_GGML_DIR="$cache/src" >"$cache/build.log" 2>&1 ||
		die "cmake configure failed: see $cache/build.log"
	log "compile with $JOBS jobs"
	"${nice[@]}" "$CMAKE" --build "$cache/build" -j "$JOBS" --target ggml-vulkan >>"$cache/build.log" 2>&1 ||
		die "build failed: see $cache/build.log"
	rm -rf "$cache/lib"
	mkdir -p "$cache/lib"
	cp -P "$cache/build/lib/pplug/"libggml-*.so* "$cache/lib/"
	touch "$cache/.done"
	log "built in $(($(date +%s) - START)) s"
}

main() {
	need_tools
	local root key cache
	root=${PPLUG_VULKAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pplug}
	key=$(key_text | sha256sum | cut -c1-16)
	cache=$root/vulkan-$key
	mkdir -p "$cache"
	key_text >"$cache/key.txt"
	exec 9>"$cache.lock"
	flock 9
	if [ -f "$cache/.done" ]; then
		log "cached: $cache"
	else
		build_libs "$cache"
	fi
	mkdir -p "$DEST"
	cp -P "$cache/lib/"libggml-*.so* "$DEST/"
	log "libraries in $DEST: $(cd "$cache/lib" && echo libggml-*.so*)"
}

main
