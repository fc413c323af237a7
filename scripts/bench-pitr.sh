#!/usr/bin/env bash
# bench-pitr.sh: what continuous WAL archiving costs the stack's PostgreSQL, in one run on this machine:
# pgbench (PostgreSQL's own, Debian's postgresql-15) TPS on the stack's server with archiving on (every
# finished segment through automate-wal, the pg-sidecar and the gateway into the repository) and off,
# runs interleaved (on, off, on, off, ...), target: the overhead at most 5%. Also what was archived and
# whether the archive kept up (segments still waiting when the run ended).
#
# Not yet measured here: the time to restore to a point 10 minutes of pgbench after a base backup (point-
# in-time restore is not built yet).
#
#   scripts/bench-pitr.sh           scale 50 (~750 MB), 4 clients, 3 runs of 60 s each way
#   scripts/bench-pitr.sh --smoke   scale 1, 2 clients, 1 run of 3 s each way, debug build
#
# BENCH_SCALE, BENCH_CLIENTS, BENCH_SECONDS and BENCH_RUNS override the sizes. Needs
# scripts/install.sh --deps (pgbench comes with postgresql-15). Runs as root or as a normal user.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
cd "$bench_repo"
scale="${BENCH_SCALE:-50}"; clients="${BENCH_CLIENTS:-4}"; seconds="${BENCH_SECONDS:-60}"; runs="${BENCH_RUNS:-3}"
if [[ $bench_smoke -eq 1 ]]; then scale=1; clients=2; seconds=3; runs=1; fi
command -v pgbench >/dev/null || { echo "bench-pitr: pgbench is missing: apt-get install postgresql-15 (or scripts/install.sh --deps)" >&2; exit 1; }

bin="$(bench_binaries bench-pitr automate automate-supervisor automate-wal backup-gateway pg-sidecar-service es-sidecar-service \
  deployment-service teams-service compliance-service)"
automate="$bin/automate"
bench_stack_home bench-pitr "$automate"

pg=$(free_port); search=$(free_port); gateway=$(free_port)
overlays() {  # $1: archive_mode
  bench_stack_overlays "$AUTOMATE_HOME" "$pg" "$search" "$gateway"
  printf 'archive_mode = "%s"\n' "$1" >> "$AUTOMATE_HOME/config/automate-postgresql.toml"
}
overlays on
"$automate" start --quiet
run="$AUTOMATE_HOME/run"
psql_() { psql -h "$run" -p "$pg" -U automate -X -q -At -v ON_ERROR_STOP=1 -d teams_service "$@"; }
echo "bench-pitr: pgbench -i -s $scale" >&2
pgbench -i -q -s "$scale" -h "$run" -p "$pg" -U automate teams_service >/dev/null 2>&1
# A first backup: the repository's format, and a base backup the archive continues from.
"$automate" backup create --no-progress >/dev/null

tps() {  # one pgbench run; prints its TPS
  pgbench -n -T "$seconds" -c "$clients" -j "$clients" -h "$run" -p "$pg" -U automate teams_service 2>/dev/null \
    | awk '/^tps = / {print $3; exit}'
}
restart_with() {  # $1: archive_mode
  "$automate" stop >/dev/null
  overlays "$1"
  "$automate" start --quiet
}
repository_bytes() { du -sb "$AUTOMATE_HOME/backups" | cut -f1; }
stored_before=$(repository_bytes)
on_runs=(); off_runs=(); waiting=0
# The server's archiver statistics survive its restarts: what the runs archived is the difference.
read -r archived_before failed_before < <(psql_ -F ' ' -c "SELECT archived_count, failed_count FROM pg_stat_archiver")
archived=0; failed=0
for i in $(seq 1 "$runs"); do
  [[ $i -gt 1 ]] && restart_with on
  echo "bench-pitr: run $i of $runs, archiving on" >&2
  on_runs+=("$(tps)")
  # What this run archived, and what was still waiting for the archiver when it ended.
  read -r a f < <(psql_ -F ' ' -c "SELECT archived_count, failed_count FROM pg_stat_archiver")
  archived=$(( a - archived_before )); failed=$(( f - failed_before ))
  waiting=$(( waiting + $(find "$AUTOMATE_HOME/data/postgresql/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l) ))
  restart_with off
  echo "bench-pitr: run $i of $runs, archiving off" >&2
  off_runs+=("$(tps)")
done
on=$(median "${on_runs[@]}"); off=$(median "${off_runs[@]}")
overhead=$(python3 -c "import sys; on, off = float(sys.argv[1]), float(sys.argv[2]); print(f'{(off - on) * 100 / off:.1f}')" "$on" "$off")
stored=$(( $(repository_bytes) - stored_before ))

echo
echo "== pgbench on the stack's PostgreSQL: scale $scale, $clients clients, ${seconds}s runs, $runs each way"
printf '%-52s runs: %s\n' "TPS, archiving on" "${on_runs[*]}"
printf '%-52s runs: %s\n' "TPS, archiving off" "${off_runs[*]}"
printf '%-52s %10s\n' "TPS, archiving on (median)" "$on"
printf '%-52s %10s   overhead %s%% (target <= 5%%)\n' "TPS, archiving off (median)" "$off" "$overhead"
printf '%-52s %10s   (%s MB in the repository; %s failed attempts; %s still waiting at the end of the runs)\n' \
  "WAL segments archived during the runs" "$archived" "$(( stored >> 20 ))" "$failed" "$waiting"
