#!/usr/bin/env bash
# arch-report.sh [REV]: the module's package import graph and its ten largest
# functions (issue 24's closing-note evidence), for git revision REV or, with
# no argument, for the working tree. A revision is read from `git archive` into
# a temporary folder; the working tree and the worktrees are left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 1 ]; then
	echo "usage: scripts/arch-report.sh [REV]" >&2
	exit 2
fi
dir=$root
if [ $# -eq 1 ]; then
	rev=$1
	if ! sha=$(git -C "$root" rev-parse --verify --quiet "$rev^{commit}"); then
		echo "arch-report.sh: $rev is not a commit of this repository; give a revision such as HEAD or 544fcf9" >&2
		exit 2
	fi
	dir=$(mktemp -d)
	trap 'rm -rf "$dir"' EXIT
	git -C "$root" archive "$sha" | tar -x -C "$dir"
	echo "# revision $(git -C "$root" rev-parse --short "$sha")"
else
	echo "# working tree at $(git -C "$root" rev-parse --short HEAD)"
fi
cd "$root"
go run ./scripts/archreport -dir "$dir"
