#!/usr/bin/env bash
# Installs everything automate needs on Debian 12 and builds it; as root or as a user (with sudo for
# the Debian packages).
#
#   scripts/install.sh            Debian packages, Python tools, release build, install under the prefix
#   scripts/install.sh --start    ... then `automate start`
#   scripts/install.sh --deps     Debian packages and Python tools only (what the tests need)
#
# Prefix: $AUTOMATE_PREFIX, else /opt/automate for root, else ~/.local/opt/automate. It gets bin/,
# services/, hooks/ and venv/ (awscli, boto3, moto, osmem-server). `automate` is linked into
# /usr/local/bin (root) or ~/.local/bin.
set -euo pipefail

mode=install
for arg in "$@"; do
  case "$arg" in
    --start) mode=start ;;
    --deps) mode=deps ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
  prefix=${AUTOMATE_PREFIX:-/opt/automate}
  linkdir=/usr/local/bin
else
  sudo="sudo"
  prefix=${AUTOMATE_PREFIX:-$HOME/.local/opt/automate}
  linkdir=$HOME/.local/bin
fi
step() { printf '==> %s\n' "$*"; }

# --- Debian packages ---------------------------------------------------------------------------------
# nginx and restic are benchmark peers (scripts/bench-gateway.sh, scripts/bench-chunks.sh), whose smoke
# modes the test suite runs; the stack never uses them, and nginx's system service is not started (below).
packages=(postgresql-15 postgresql-contrib libpq-dev libcurl4-openssl-dev libsystemd-dev libzstd-dev zstd
  protobuf-compiler python3 python3-venv python3-pip curl procps pkg-config systemd util-linux nginx restic)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "install.sh: these Debian packages are missing and you are not root (and have no sudo): ${missing[*]}" >&2
    echo "install.sh: run 'scripts/install.sh --deps' once as root, then again as yourself" >&2
    exit 1
  fi
  step "installing Debian packages: ${missing[*]}"
  # The stack runs its own PostgreSQL: don't let the package make (and start) a system cluster.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  # Nor start nginx's system service: a policy-rc.d that says no, for this install only.
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# made by automate scripts/install.sh for one apt-get run\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    made_policy=1
  fi
  status=0
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q || status=$?
  [ "$status" -eq 0 ] && { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?; }
  [ -n "$made_policy" ] && $sudo rm -f "$policy"
  [ "$status" -eq 0 ] || { echo "install.sh: apt-get failed (exit $status) installing: ${missing[*]}" >&2; exit "$status"; }
fi

# --- Python tools (a venv: Debian's Python is externally managed) -------------------------------------
venv="$prefix/venv"
# Debian's Python, which every service user may run (a venv made from a Python under /root is not).
if [ -e "$venv/bin/python" ] && [[ "$(readlink -f "$venv/bin/python")" != /usr/* ]]; then
  step "remaking $venv from /usr/bin/python3 (its Python, $(readlink -f "$venv/bin/python"), is out of the service users' reach)"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/osmem-server" ] || [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/aws" ]; then
  step "installing awscli, boto3, moto[server], osmem-server into $venv"
  mkdir -p "$prefix"
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check awscli boto3 'moto[server]' osmem-server
  # osmem-server ships a Go binary inside the package: put it on the venv's PATH.
  ln -sf "$("$venv/bin/python" -c 'import osmem_server; print(osmem_server.resolve_binary())')" "$venv/bin/osmem-server"
fi

# --- the user `automate` (root only): the tests run initdb as it, and its group is the run folder's -----
# (the supervisor makes a user of its own for each service on first start)
if [ "$(id -u)" -eq 0 ] && ! id automate >/dev/null 2>&1; then
  step "creating system user automate"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin automate
fi

[ "$mode" = deps ] && { step "dependencies ready (tools in $venv/bin)"; exit 0; }

# SwiftPM clones its dependencies from a local package mirror that root owns. Let git read it as any
# user, for this run only: a global config of our own that marks it safe and includes the user's own.
if [ "$(id -u)" -ne 0 ]; then
  gitconfig=$(mktemp)
  printf '[safe]\n\tdirectory = *\n[include]\n\tpath = %s/.gitconfig\n' "$HOME" > "$gitconfig"
  export GIT_CONFIG_GLOBAL="$gitconfig"
fi
# --- build and install --------------------------------------------------------------------------------
step "building (release)"
products=(automate automate-supervisor backup-gateway pg-sidecar-service es-sidecar-service deployment-service teams-service
  compliance-service)
for product in "${products[@]}"; do
  (cd "$repo" && swift build -c release --product "$product")
done
bin=$(cd "$repo" && swift build -c release --show-bin-path)
step "installing into $prefix"
stage=$(mktemp -d "$prefix/.install.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
for product in "${products[@]}"; do cp "$bin/$product" "$stage/bin/"; done
cp -R "$repo/services" "$repo/hooks" "$stage/"
chmod -R a+rX "$stage"
for part in bin services hooks; do
  rm -rf "$prefix/$part.old"
  [ -e "$prefix/$part" ] && mv "$prefix/$part" "$prefix/$part.old"
  mv "$stage/$part" "$prefix/$part"
  rm -rf "$prefix/$part.old"
done
chmod a+rx "$prefix"
mkdir -p "$linkdir"
ln -sf "$prefix/bin/automate" "$linkdir/automate"
step "installed: $linkdir/automate"
case ":$PATH:" in *":$linkdir:"*) ;; *) echo "    (add $linkdir to your PATH)";; esac

if [ "$mode" = start ]; then
  step "starting the stack"
  exec "$prefix/bin/automate" start
fi
