#!/usr/bin/env bash
# scripts/install-deps.sh - install the Debian/Ubuntu packages pplug's build and
# tests need, only those missing (apt-get, no recommends; sudo when not root).
#
#   scripts/install-deps.sh            g++, make, tmux (the tests drive chat in tmux),
#                                      postgresql and nginx-light (the PostgreSQL store's tests
#                                      start a server; a replica test puts nginx in front)
#   scripts/install-deps.sh --vulkan   and what `make vulkan` / `make test-vulkan` need:
#                                      cmake, glslc, libvulkan-dev, mesa-vulkan-drivers
#                                      (lavapipe, a software Vulkan 1.3 device), patch
#
# Exit status: 0 when everything is installed afterwards; 1 when apt-get is
# missing or fails (the message names the packages); 2 for a bad argument.

set -euo pipefail

BASE=(g++ make tmux postgresql nginx-light)
VULKAN=(cmake glslc libvulkan-dev mesa-vulkan-drivers patch)

usage() { printf 'usage: %s [--vulkan]\n' "$0" >&2; exit 2; }

# missing prints the packages of "$@" that dpkg does not list as installed.
missing() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$p"
	done
}

main() {
	local want=("${BASE[@]}")
	case "${1:-}" in
	"") ;;
	--vulkan) want+=("${VULKAN[@]}") ;;
	*) usage ;;
	esac
	[ $# -le 1 ] || usage
	command -v dpkg-query >/dev/null || {
		printf 'install-deps: not a Debian/Ubuntu system; install by hand: %s\n' "${want[*]}" >&2
		exit 1
	}
	local need
	mapfile -t need < <(missing "${want[@]}")
	if [ ${#need[@]} -eq 0 ]; then
		printf 'install-deps: installed: %s\n' "${want[*]}" >&2
		return 0
	fi
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	printf 'install-deps: installing %s\n' "${need[*]}" >&2
	if ! "${sudo[@]}" apt-get update -qq ||
		! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; then
		printf 'install-deps: FAILED to install %s (apt-get above says why)\n' "${need[*]}" >&2
		exit 1
	fi
	mapfile -t need < <(missing "${want[@]}")
	[ ${#need[@]} -eq 0 ] || {
		printf 'install-deps: still missing after apt-get: %s\n' "${need[*]}" >&2
		exit 1
	}
}

main "$@"
