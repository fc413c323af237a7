#!/usr/bin/env bash
# Supervisor benchmark: time from `automate start` to all-healthy (PostgreSQL's own start time reported
# apart), time to bring back a killed service (minus its backoff delay), and the supervisor's memory.
# Release build, a throw-away home, the whole stack on free loopback ports. Targets: <= 1 s excluding
# PostgreSQL, <= 0.2 s restart, <= 20 MB RSS.
#
#   scripts/bench-supervisor.sh           5 warm starts, 5 restarts
#   scripts/bench-supervisor.sh --smoke   1 of each, debug build (what the test suite runs)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
cd "$bench_repo"
bin=$(bench_binaries bench-supervisor automate automate-supervisor)
runs=5
[[ $bench_smoke -eq 1 ]] && runs=1
if [ "$(id -u)" -eq 0 ]; then prefix=${AUTOMATE_PREFIX:-/opt/automate}; else prefix=${AUTOMATE_PREFIX:-$HOME/.local/opt/automate}; fi
export AUTOMATE_TOOLS_DIR=${AUTOMATE_TOOLS_DIR:-$prefix/venv/bin}
work=$(mktemp -d /tmp/automate-bench.XXXXXX)
chmod 755 "$work"
export AUTOMATE_HOME="$work/home"
events_pid=
trap '"$bin/automate" stop >/dev/null 2>&1 || true; [ -z "$events_pid" ] || kill $events_pid 2>/dev/null || true; rm -rf "$work"' EXIT
bench_stack_overlays "$AUTOMATE_HOME" "$(free_port)" "$(free_port)" "$(free_port)"

ms() { date +%s%3N; }
# Per-service readiness from the CLI's own progress lines: "  4.26s  name  running  ...".
ready_at() { awk -v svc="$1" '$2 == svc && $3 == "running" { sub("s", "", $1); print $1 * 1000; exit }' "$2"; }

echo "== cold start (includes initdb)"
t0=$(ms); "$bin/automate" start > "$work/cold.txt"; t1=$(ms)
cat "$work/cold.txt"
"$bin/automate" stop > /dev/null

run_warm() {
  local out="$work/warm-$1.txt"
  local t0 t1
  t0=$(ms); "$bin/automate" start > "$out"; t1=$(ms)
  local total=$((t1 - t0))
  local pg search
  pg=$(ready_at automate-postgresql "$out"); search=$(ready_at automate-search "$out")
  echo "$total ${pg%.*} ${search%.*}"
}
echo "== warm starts (cluster exists), $runs runs: total ms, PostgreSQL ready at ms, search ready at ms"
totals=(); pgs=(); others=()
for i in $(seq 1 "$runs"); do
  read -r total pg search < <(run_warm "$i")
  echo "   run $i: all healthy ${total} ms; postgresql ready at ${pg} ms; search ready at ${search} ms"
  totals+=("$total"); pgs+=("$pg"); others+=("$search")
  if [ "$i" -lt "$runs" ]; then "$bin/automate" stop > /dev/null; fi
done
total_med=$(median "${totals[@]}"); pg_med=$(median "${pgs[@]}"); other_med=$(median "${others[@]}")

echo "== restart of a killed service (automate-search, kill -9), $runs runs"
"$bin/automate" events --json --current > "$work/events.jsonl" &
events_pid=$!
# The stream must be subscribed before the first kill, or the kill's events are missed: it starts with one
# line per service (--current); wait for those.
services=$("$bin/automate" status --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["services"]))')
deadline=$(( $(ms) + 60000 ))
until [ "$(wc -l < "$work/events.jsonl")" -ge "$services" ]; do
  [ "$(ms)" -lt "$deadline" ] || { echo "automate events did not start" >&2; exit 1; }
  sleep 0.05
done
restarts=()
for i in $(seq 1 "$runs"); do
  pid=$("$bin/automate" status --json | python3 -c 'import json,sys; print([s["pid"] for s in json.load(sys.stdin)["services"] if s["name"]=="automate-search"][0])')
  skip=$(wc -l < "$work/events.jsonl")
  kill -9 "$pid"
  deadline=$(( $(ms) + 30000 ))
  # Only events after the kill count: the exit, the announced backoff, the new healthy process.
  until r=$(python3 - "$work/events.jsonl" "$skip" "$pid" <<'PY'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]
old = int(sys.argv[3])
svc = [json.loads(l) for l in lines if l.strip()]
svc = [e for e in svc if e.get("service") == "automate-search"]
exits = [k for k, e in enumerate(svc) if e["kind"] == "exit" and "SIGKILL" in e["message"]]
if not exits: sys.exit(1)
i = exits[0]
delays = [float(m.group(1)) for e in svc[i:] for m in [re.search(r"restarting in ([0-9.]+)s", e["message"])] if m]
running = [e["at_unix_ms"] for e in svc[i:] if e.get("state") == "running" and e.get("pid") not in (0, old)]
if not delays or not running: sys.exit(1)
gross = running[0] - svc[i]["at_unix_ms"]
print(f"{gross - delays[0] * 1000:.0f} {delays[0] * 1000:.0f} {gross}")
PY
)
  do
    [ "$(ms)" -lt "$deadline" ] || { echo "automate-search did not come back" >&2; exit 1; }
    sleep 0.05
  done
  read -r net delay gross <<<"$r"
  echo "   run $i: back in ${gross} ms, of which backoff ${delay} ms: ${net} ms of supervisor work"
  restarts+=("$net")
done
restart_med=$(median "${restarts[@]}")

spid=$(cat "$AUTOMATE_HOME/run/automate-supervisor.lock")
rss=$(awk '/VmRSS/{print $2}' /proc/"$spid"/status); hwm=$(awk '/VmHWM/{print $2}' /proc/"$spid"/status)
anon=$(awk '/^(Private_Dirty|Private_Clean):/{s+=$2} END{print s}' /proc/"$spid"/smaps_rollup 2>/dev/null || echo 0)
pss=$(awk '/^Pss:/{print $2}' /proc/"$spid"/smaps_rollup 2>/dev/null || echo 0)

echo
echo "== results (medians)"
echo "start to all-healthy (warm):           ${total_med} ms"
echo "  PostgreSQL's own start (to healthy):   ${pg_med} ms"
echo "  excluding PostgreSQL (search ready):   ${other_med} ms    target <= 1000 ms"
echo "killed service back (minus backoff):     ${restart_med} ms    target <= 200 ms"
echo "supervisor RSS now / peak:               $((rss / 1024)) MB / $((hwm / 1024)) MB    target <= 20 MB"
echo "supervisor PSS / private:                $((pss / 1024)) MB / $((anon / 1024)) MB"
