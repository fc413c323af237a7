#!/usr/bin/env bash
# Installs what the tests need (Debian packages, Python tools) and runs every test; as root or a user.
# Tests start their own PostgreSQL, search engine and S3 servers on loopback and in temp folders.
#   scripts/test.sh                 everything
#   scripts/test.sh --filter NAME   only the matching tests (passed to `swift test`)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/install.sh" --deps
if [ "$(id -u)" -eq 0 ]; then prefix=${AUTOMATE_PREFIX:-/opt/automate}; else prefix=${AUTOMATE_PREFIX:-$HOME/.local/opt/automate}; fi
export AUTOMATE_TOOLS_DIR="$prefix/venv/bin"
export PATH="$prefix/venv/bin:$PATH"
# SwiftPM clones its dependencies from a local package mirror that root owns. Let git read it as any
# user, for this run only: a global config of our own that marks it safe and includes the user's own.
if [ "$(id -u)" -ne 0 ]; then
  gitconfig=$(mktemp)
  printf '[safe]\n\tdirectory = *\n[include]\n\tpath = %s/.gitconfig\n' "$HOME" > "$gitconfig"
  export GIT_CONFIG_GLOBAL="$gitconfig"
fi
cd "$repo"
echo "==> building"
# Line tables only: a crash's backtrace still names file and line, and the build is shorter than with
# full debug information (swift build prints how long it took).
swift build --build-tests -Xswiftc -gline-tables-only
echo "==> testing"
if [ $# -gt 0 ]; then exec swift test --skip-build "$@"; fi
# The RPC layer's tests time connections to the second (idle timeouts, deadlines). They run in a
# process of their own first: in the shared one, fixtures that wait on initdb or a server start block
# the few cooperative threads a 2-core machine has, and a reply could wait longer than its timeout.
echo "==> RPC layer (its own process)"
status=0
swift test --skip-build --filter 'AutomateRPCTests\.' || status=$?
echo "==> everything else"
swift test --skip-build --skip 'AutomateRPCTests\.' || status=$?
exit "$status"

