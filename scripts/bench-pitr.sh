#!/usr/bin/env bash
# bench-pitr.sh: what continuous WAL archiving costs the stack's PostgreSQL, in one run on this machine:
# pgbench (PostgreSQL's own, Debian's postgresql-15) TPS on the stack's server with archiving on (every
# finished segment through automate-wal, the pg-sidecar and the gateway into the repository) and off,
# runs interleaved (on, off, on, off, ...), target: the overhead at most 5%. Also what was archived and
# whether the archive kept up (segments still waiting when the run ended).
#
# Then a point-in-time restore: a backup (its base backup), pgbench for BENCH_PITR_SECONDS more (600 by
# default: the point is "10 minutes of pgbench after the base backup"), then `automate restore --to-time`
# to the end of that run, over the same home (--force), against the same recovery by hand from the same
# repository: the base backup's tar through zstd into an empty folder, and PostgreSQL replaying the
# archived segments with restore_command = 'zstd -dc <archive>/%f.zst > %p', to the same time. The
# repository is plain here, so that the hand-made recovery reads the same files.
#
#   scripts/bench-pitr.sh           scale 50 (~750 MB), 4 clients, 3 runs of 60 s each way; 600 s before the point
#   scripts/bench-pitr.sh --smoke   scale 1, 2 clients, 1 run of 3 s each way, 3 s before the point; debug build
#
# BENCH_SCALE, BENCH_CLIENTS, BENCH_SECONDS, BENCH_RUNS and BENCH_PITR_SECONDS override the sizes. Needs
# scripts/install.sh --deps (pgbench comes with postgresql-15). Runs as root or as a normal user.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
cd "$bench_repo"
scale="${BENCH_SCALE:-50}"; clients="${BENCH_CLIENTS:-4}"; seconds="${BENCH_SECONDS:-60}"; runs="${BENCH_RUNS:-3}"
pitr_seconds="${BENCH_PITR_SECONDS:-600}"
if [[ $bench_smoke -eq 1 ]]; then scale=1; clients=2; seconds=3; runs=1; pitr_seconds=3; fi
command -v pgbench >/dev/null || { echo "bench-pitr: pgbench is missing: apt-get install postgresql-15 (or scripts/install.sh --deps)" >&2; exit 1; }

bin="$(bench_binaries bench-pitr automate automate-supervisor automate-wal backup-gateway pg-sidecar-service es-sidecar-service \
  deployment-service teams-service compliance-service)"
automate="$bin/automate"
bench_stack_home bench-pitr "$automate"

pg=$(free_port); search=$(free_port); gateway=$(free_port)
overlays() {  # $1: archive_mode
  bench_stack_overlays "$AUTOMATE_HOME" "$pg" "$search" "$gateway"
  printf 'archive_mode = "%s"\n' "$1" >> "$AUTOMATE_HOME/config/automate-postgresql.toml"
  printf '[config]\nrepository_format = "plain"\n' > "$AUTOMATE_HOME/config/deployment-service.toml"
}
overlays on
"$automate" start --quiet
run="$AUTOMATE_HOME/run"
psql_() { psql -h "$run" -p "$pg" -U automate -X -q -At -v ON_ERROR_STOP=1 -d teams_service "$@"; }
echo "bench-pitr: pgbench -i -s $scale" >&2
pgbench -i -q -s "$scale" -h "$run" -p "$pg" -U automate teams_service >/dev/null 2>&1
# A first backup: the repository's format, and a base backup the archive continues from.
"$automate" backup create --no-progress >/dev/null
# The runs measure archiving as it keeps up with the writes, not the backlog of the initialisation (a
# few hundred segments at scale 50): wait until the archiver has nothing left to do.
ready() { find "$AUTOMATE_HOME/data/postgresql/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l; }
for _ in $(seq 1 3000); do [[ $(ready) -eq 0 ]] && break; sleep 0.2; done

# One pgbench run; prints its TPS. The compared runs ($1 empty) let pgbench vacuum its small tables and
# empty its history first, as it does by default, so each starts alike; the run before a point ($1
# seconds) keeps the history (-n), which the restore's check compares.
tps() {
  local vacuum=(); [[ -n "${1:-}" ]] && vacuum=(-n)
  pgbench "${vacuum[@]}" -T "${1:-$seconds}" -c "$clients" -j "$clients" -h "$run" -p "$pg" -U automate teams_service 2>/dev/null \
    | awk '/^tps = / {print $3; exit}'
}
restart_with() {  # $1: archive_mode
  "$automate" stop >/dev/null
  overlays "$1"
  "$automate" start --quiet
}
repository_bytes() { du -sb "$AUTOMATE_HOME/backups" | cut -f1; }
# What archiving itself costs in CPU, steadier than TPS on a shared machine: the CPU time of the
# pg-sidecar and the gateway (nothing else uses them during the runs) and of the archiver's children
# (automate-wal: the archiver process's cutime and cstime), in clock ticks.
archiving_ticks() {
  local archiver total=0 pid
  archiver=$(psql_ -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'")
  for pid in $(service_pid pg-sidecar-service) $(service_pid backup-gateway); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  [[ -n "$archiver" ]] && total=$(( total + $(awk '{print $16 + $17}' "/proc/$archiver/stat") ))
  echo "$total"
}
archiving_cpu_ticks=0
stored_before=$(repository_bytes)
on_runs=(); off_runs=(); waiting=0
# The server's archiver statistics survive its restarts: what the runs archived is the difference.
read -r archived_before failed_before < <(psql_ -F ' ' -c "SELECT archived_count, failed_count FROM pg_stat_archiver")
archived=0; failed=0
# Every run starts alike: the stack restarted with the mode (cold shared buffers both ways) and a
# checkpoint first (no dirty pages of the run before, or of the initialisation, to write during it); the
# order alternates (on, off, off, on, ...) so that a drift of the machine falls on both.
for i in $(seq 1 "$runs"); do
  if (( i % 2 )); then order=(on off); else order=(off on); fi
  for mode in "${order[@]}"; do
    restart_with "$mode"
    psql_ -c "CHECKPOINT"
    echo "bench-pitr: run $i of $runs, archiving $mode" >&2
    if [[ $mode == off ]]; then off_runs+=("$(tps)"); continue; fi
    ticks_before=$(archiving_ticks)
    on_runs+=("$(tps)")
    archiving_cpu_ticks=$(( archiving_cpu_ticks + $(archiving_ticks) - ticks_before ))
    # What this run archived, and what was still waiting for the archiver when it ended.
    read -r a f < <(psql_ -F ' ' -c "SELECT archived_count, failed_count FROM pg_stat_archiver")
    archived=$(( a - archived_before )); failed=$(( f - failed_before ))
    waiting=$(( waiting + $(find "$AUTOMATE_HOME/data/postgresql/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l) ))
  done
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
python3 - "$archiving_cpu_ticks" "$(getconf CLK_TCK)" "$archived" "$runs" "$seconds" "$(nproc)" <<'PY'
import sys
ticks, hz, segments, runs, seconds, cores = (float(a) for a in sys.argv[1:])
cpu = ticks / hz
share = cpu * 100 / (runs * seconds * cores)
per = cpu * 1000 / segments if segments else 0
print(f"{'CPU spent archiving (sidecar, gateway, automate-wal)':<52} {cpu:10.1f} s   {per:.0f} ms per segment; {share:.1f}% of the machine's {cores:.0f} cores during the on runs")
PY

# == Point-in-time restore: 10 minutes (BENCH_PITR_SECONDS) of pgbench after a base backup.
restart_with on
id=$("$automate" backup create --no-progress | awk '/^Created backup / {print $3}')
echo "bench-pitr: backup $id taken; pgbench for ${pitr_seconds}s before the point" >&2
pitr_tps=$(tps "$pitr_seconds")
target=$(psql_ -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || 'Z'")
rows=$(psql_ -c "SELECT sum(delta) || ':' || count(*) FROM pgbench_history")
# Recovery to a time stops at the first commit after it: one more transaction marks the point.
psql_ -c "SELECT txid_current()" >/dev/null
last=$(psql_ -c "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 600); do
  [[ "$(psql_ -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")" > "$last" || \
     "$(psql_ -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")" == "$last" ]] && break
  sleep 0.2
done
cluster=$(psql_ -c "SELECT system_identifier FROM pg_control_system()")
segments=$(find "$AUTOMATE_HOME/backups/automate-postgresql-wal/$cluster" -name '0*.zst' | wc -l)
wal_bytes=$(find "$AUTOMATE_HOME/backups/automate-postgresql-wal/$cluster" -name '0*.zst' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
dbuser=$(stat -c %U "$AUTOMATE_HOME/data/postgresql")

echo "bench-pitr: automate restore --to-time $target --force" >&2
t0=$(now)
"$automate" restore "$AUTOMATE_HOME/backups" --to-time "$target" --force --skip-verify --json > "$work/restore.json"
t1=$(now)
automate_total=$(elapsed "$t0" "$t1")
automate_cluster=$(python3 -c "
import json, sys
s = json.load(open(sys.argv[1]))
part = next(p for p in s['shortTerm'] if p['service'] == 'automate-postgresql')
print(f\"{(int(part['finishedAtUnixMs']) - int(part['startedAtUnixMs'])) / 1000:.2f}\")" "$work/restore.json")
restored=$(psql_ -c "SELECT sum(delta) || ':' || count(*) FROM pgbench_history")
[[ "$restored" == "$rows" ]] || { echo "bench-pitr: the restored pgbench_history is $restored, not $rows as at the point" >&2; exit 1; }
"$automate" stop >/dev/null

# By hand, from the same repository: the base backup's tar into an empty folder, WAL through zstd.
hand="$work/by-hand"; mkdir -p "$hand"; chmod 700 "$hand"
archive="$AUTOMATE_HOME/backups/automate-postgresql-wal/$cluster/00000001"
as_db() { if [[ $(id -u) -eq 0 ]]; then runuser -u "$dbuser" -- "$@"; else "$@"; fi; }
if [[ $(id -u) -eq 0 ]]; then
  # The archive is the gateway's; the hand-made server's restore_command reads it as the database's user.
  chown "$dbuser" "$hand"
  touch "$hand.log"; chown "$dbuser" "$hand.log"
  chmod a+rx "$AUTOMATE_HOME" "$AUTOMATE_HOME/backups"
  chmod -R a+rX "$AUTOMATE_HOME/backups/automate-postgresql-wal"
fi
hand_port=$(free_port)
echo "bench-pitr: the same recovery by hand" >&2
t0=$(now)
zstd -dcq "$AUTOMATE_HOME/backups/$id/automate-postgresql/pg_base/base.tar.zst" | as_db tar -x -C "$hand" -f -
as_db touch "$hand/recovery.signal"
as_db sh -c "cat >> '$hand/postgresql.auto.conf'" <<CONF
restore_command = 'zstd -dcq $archive/%f.zst > %p'
recovery_target_time = '${target%Z}+00'
recovery_target_action = 'promote'
archive_mode = off
CONF
as_db /usr/lib/postgresql/15/bin/pg_ctl -D "$hand" -w -t 3600 -l "$hand.log" \
  -o "-c port=$hand_port -c listen_addresses='' -c unix_socket_directories='$hand'" start >/dev/null
until [[ "$(psql -h "$hand" -p "$hand_port" -U automate -X -At -d teams_service -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == "f" ]]; do sleep 0.1; done
t1=$(now)
hand_total=$(elapsed "$t0" "$t1")
by_hand=$(psql -h "$hand" -p "$hand_port" -U automate -X -At -d teams_service -c "SELECT sum(delta) || ':' || count(*) FROM pgbench_history")
as_db /usr/lib/postgresql/15/bin/pg_ctl -D "$hand" -m fast stop >/dev/null
[[ "$by_hand" == "$rows" ]] || { echo "bench-pitr: the hand-made recovery has pgbench_history $by_hand, not $rows" >&2; exit 1; }

echo
echo "== point-in-time restore to ${pitr_seconds}s of pgbench ($pitr_tps TPS) after base backup $id: $segments WAL segments ($(( wal_bytes >> 20 )) MB compressed)"
printf '%-52s %10s s\n' "by hand (tar from zstd, zstd restore_command)" "$hand_total"
printf '%-52s %10s s   %sx by hand\n' "automate restore --to-time: the cluster's recovery" "$automate_cluster" "$(ratio "$automate_cluster" "$hand_total")"
printf '%-52s %10s s   (the whole stack relaunched, every check included)\n' "automate restore --to-time: all of it" "$automate_total"
echo "(both reached pgbench_history = $rows, as at the point)"

# What one start of automate-wal costs (PostgreSQL starts it for every segment, both ways) against one of
# zstd (the hand-made restore_command's): the mean of many starts that do nothing but answer a wrong
# command line.
starts=200; [[ $bench_smoke -eq 1 ]] && starts=10
start_ms() {
  local t0 t1
  t0=$(now)
  for _ in $(seq "$starts"); do "$@" >/dev/null 2>&1 || true; done
  t1=$(now)
  python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000 / int(sys.argv[3]):.1f}')" "$t0" "$t1" "$starts"
}
wal_ms=$(start_ms "$bin/automate-wal" --usage); zstd_ms=$(start_ms zstd --bogus-option)
printf '%-52s %10s ms   (zstd: %s ms; mean of %s starts)\n' "one start of automate-wal" "$wal_ms" "$zstd_ms" "$starts"
