# Shared by the scripts/bench-*.sh benchmarks: sourced, never run. Gives each script the same
# command line (--smoke), the same binaries (a release build, or the debug build in smoke mode), the same
# stack configuration on free loopback ports, and the same arithmetic.
#
#   --smoke        tiny sizes and one run, using the already built debug binaries ($BENCH_BIN, else
#                  .build/debug): the test suite runs every benchmark this way so that none goes stale.
#                  Never builds (a test run holds the build folder).

bench_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_smoke=0
for bench_arg in "$@"; do
  case "$bench_arg" in
    --smoke) bench_smoke=1 ;;
  esac
done

# bench_binaries NAME PRODUCT...: prints the folder holding the products. Release build (into the
# package's own .build) unless in smoke mode.
bench_binaries() {
  local name=$1; shift
  if [[ $bench_smoke -eq 1 ]]; then
    local bin=${BENCH_BIN:-$bench_repo/.build/debug}
    for product in "$@"; do
      [[ -x "$bin/$product" ]] || { echo "$name: $bin/$product is missing: build first (swift build)" >&2; return 1; }
    done
    echo "$bin"
    return 0
  fi
  echo "$name: release build" >&2
  for product in "$@"; do
    (cd "$bench_repo" && swift build -c release --product "$product" >/dev/null) || {
      echo "$name: release build of $product failed" >&2; return 1; }
  done
  (cd "$bench_repo" && swift build -c release --show-bin-path)
}

# service_pid NAME: the pid of a running service of the bench's stack (through `$automate status --json`).
service_pid() { "$automate" status --json | python3 -c "import json,sys; print(next(s['pid'] for s in json.load(sys.stdin)['services'] if s['name']=='$1'))"; }

# bench_stack_home NAME AUTOMATE: a fresh work folder ($work, readable by the service users) holding the
# stack's home ($AUTOMATE_HOME); when the script exits the stack is stopped and the folder removed.
bench_stack_home() {
  work="$(mktemp -d "/tmp/$1.XXXXXX")"
  chmod 755 "$work"
  export AUTOMATE_HOME="$work/home"
  bench_automate=$2
  trap bench_cleanup EXIT
}
bench_cleanup() {
  "$bench_automate" stop >/dev/null 2>&1 || true
  # BENCH_KEEP=1 keeps the folder (logs, repository) for a look afterwards.
  if [[ -n "${BENCH_KEEP:-}" ]]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}

# free_port: a loopback TCP port nothing holds now, below the kernel's ephemeral range (32768-60999), so
# that no outgoing connection of anything running beside the benchmark takes it before its server binds.
free_port() {
  python3 - <<'PY'
import random, socket
while True:
    port = random.randint(20000, 32767)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(port)
        break
    except OSError:
        pass
    finally:
        s.close()
PY
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / max(float(sys.argv[2]), 1e-9):.2f}')" "$1" "$2"; }
# median N...: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# bench_stack_overlays HOME PG_PORT SEARCH_PORT GATEWAY_PORT: the operator's configuration of a whole
# stack on free loopback ports (what the tests' TestStack.writeOverlays writes), one overlay per service.
bench_stack_overlays() {
  local home=$1 pg=$2 search=$3 gateway=$4
  mkdir -p "$home/config"
  printf '[config]\nport = %s\n' "$pg" > "$home/config/automate-postgresql.toml"
  for s in pg-sidecar-service teams-service notifications-service; do
    printf '[config]\npg_port = %s\n' "$pg" > "$home/config/$s.toml"
  done
  printf '[config]\npg_port = %s\nsearch_url = "http://127.0.0.1:%s"\n' "$pg" "$search" > "$home/config/compliance-service.toml"
  printf '[config]\nport = %s\n' "$search" > "$home/config/automate-search.toml"
  printf '[config]\nsearch_url = "http://127.0.0.1:%s"\n' "$search" > "$home/config/es-sidecar-service.toml"
  printf '[config]\nport = %s\n' "$gateway" > "$home/config/backup-gateway.toml"
}
