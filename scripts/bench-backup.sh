#!/usr/bin/env bash
# bench-backup.sh: a full backup and a full restore of the real stack (release build), against the same
# data handled by hand with the standard tools, in one run on this machine.
#
#   backup   automate backup create            vs  pg_dump -Fc  ∥  tar czf                (target: >= 8x faster)
#                                              vs  pg_dump -Fc -Z0 | zstd  ∥  tar cf - | zstd  (floor: <= 1.2x)
#   restore  automate restore (incl. preflight) vs  zstd -dc | pg_restore  ∥  zstd -dc | tar xf  (target: <= 1.15x)
#            time to all-ready (the command returns) and to long-term done
#   peak RSS of the deployment-service and of the automate CLI
#   chunked  (after the plain runs, the same data into a chunked repository, restic beside it)
#            first backup: chunked vs plain (target <= 1.3x), restic's time beside it
#            2% of the files rewritten, 2% rows appended, second backup: time vs restic's (target: faster),
#            and the same for the five incremental rounds after it (medians of the six); each backup starts
#            after a sync, and where each chunked backup's time went is printed per service
#            bytes added (target <= 2% of the first), restic's beside it
#            the repository after seven such backups (and restic's)
#            restore from the chunked repository vs by hand (target <= 1.15x), as many runs as above
#
# Data: a PostgreSQL database of BENCH_DB_MB (default 1024) in teams-service and BENCH_FILES_MB
# (default 1024) of mixed files (half random, half text; a few large files and many small ones) in
# compliance-service's profiles. Needs scripts/install.sh --deps. Runs as root or as a normal user.
#
#   scripts/bench-backup.sh            3 runs of each measure, medians last
#   scripts/bench-backup.sh --smoke    tiny data, 2 runs, debug build (what the test suite runs)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
root="$bench_repo"
cd "$root"
runs="${BENCH_RUNS:-3}"
db_mb="${BENCH_DB_MB:-1024}"
files_mb="${BENCH_FILES_MB:-1024}"
# Two runs in smoke mode: the second starts from the first restore (its adopted repository).
if [[ $bench_smoke -eq 1 ]]; then runs=2; db_mb=4; files_mb=4; fi

bin="$(bench_binaries bench-backup automate automate-supervisor backup-gateway pg-sidecar-service es-sidecar-service \
  deployment-service teams-service compliance-service)"
automate="$bin/automate"

bench_stack_home bench-backup "$automate"

peak_rss_of() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }
# Runs a command, prints its peak RSS in MB (children included) on fd 3.
with_rss() { python3 -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=open("/dev/fd/3", "w"))
sys.exit(r)' "$@"; }

pg=$(free_port); search=$(free_port); gateway=$(free_port)
# WAL archiving off: this compares the services' backups with the same work by hand (pg_dump, tar) and
# restic; a base backup of the cluster is other work, and scripts/bench-pitr.sh measures what archiving costs.
write_overlays() {
  bench_stack_overlays "$AUTOMATE_HOME" "$pg" "$search" "$gateway"
  printf 'archive_mode = "off"\n' >> "$AUTOMATE_HOME/config/automate-postgresql.toml"
}
write_overlays
"$automate" start --quiet
# The runs below measure the plain format (every artifact a file); the chunked section after them measures
# the chunked one.
"$automate" backup repository init --format plain >/dev/null
run="$AUTOMATE_HOME/run"
psql_() { psql -h "$run" -p "$pg" -U automate -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "bench-backup: loading ${db_mb} MB into PostgreSQL and ${files_mb} MB of files" >&2
rows=$(( db_mb * 1024 * 1024 / 180 ))
psql_ -d teams_service -c "CREATE TABLE bench AS SELECT g AS id, md5(g::text) || md5((g*3)::text) || md5((g*7)::text) AS pad, now() AS at FROM generate_series(1, $rows) g" >/dev/null
psql_ -d teams_service -c "CREATE INDEX ON bench (id)" >/dev/null
db_size=$(psql_ -d teams_service -Atc "SELECT pg_database_size('teams_service')")
profiles="$AUTOMATE_HOME/data/compliance-service/profiles"
half=$(( files_mb / 2 ))
python3 - "$profiles" "$half" <<'PY'
import os, random, sys
root, half = sys.argv[1], int(sys.argv[2])
random.seed(7)
os.makedirs(root + "/big", exist_ok=True); os.makedirs(root + "/small", exist_ok=True)
# Half random bytes in a few large files, half text in many small ones.
left = half << 20
n = 0
while left > 0:
    size = min(left, 64 << 20)
    with open(f"{root}/big/blob-{n}.bin", "wb") as f: f.write(os.urandom(size))
    left -= size; n += 1
words = [b"control", b"ssh", b"kernel", b"passed", b"failed", b"profile", b"baseline", b"audit", b"node", b"scan"]
left = half << 20
n = 0
while left > 0:
    size = min(left, random.randint(4 << 10, 256 << 10))
    text = b" ".join(random.choice(words) for _ in range(size // 6 + 1))[:size]
    with open(f"{root}/small/report-{n:06d}.txt", "wb") as f: f.write(text)
    left -= size; n += 1
PY
[[ $(id -u) -eq 0 ]] && chown -R --reference="$profiles" "$profiles"
sync
files_size=$(du -sb "$profiles" | cut -f1)
echo "bench-backup: database $(( db_size >> 20 )) MB, files $(( files_size >> 20 )) MB" >&2

by_hand() {  # $1: dump command, $2: tar command; both in parallel, wall time printed
  local a b s
  s=$(now)
  bash -c "$1" & a=$!
  bash -c "$2" & b=$!
  wait "$a"; wait "$b"
  elapsed "$s" "$(now)"
}
# Where a backup's time went: each service's part (backup-result.json), in the order they ended.
backup_phases() {
  python3 - "$1" <<'PY2'
import json, sys
r = json.load(open(sys.argv[1]))
for s in sorted(r["services"], key=lambda s: -s["duration_ms"]):
    print(f"    {s['service']:<40} {s['duration_ms'] / 1000:7.2f}s  {s['bytes'] / 1048576:9.1f} MiB  {s['artifacts']} artifacts")
print(f"    {'(whole backup, records included)':<40} {r['duration_ms'] / 1000:7.2f}s")
PY2
}
# Where a restore's time went: command start to the first service's restore (preflight, bring-up),
# then each service's short-term part, then the long-term parts.
restore_phases() {
  python3 - "$1" "$2" <<'PY2'
import json, sys
r = json.load(open(sys.argv[1])); t0 = float(sys.argv[2]) * 1000
def ms(s, k): return int(s.get(k, 0) or 0)
short = r.get("shortTerm", [])
starts = [ms(s, "startedAtUnixMs") for s in short if ms(s, "startedAtUnixMs")]
if starts: print(f"    {'preflight and bring-up':<40} {(min(starts) - t0) / 1000:7.2f}s")
for s in sorted(short, key=lambda s: -(ms(s, "finishedAtUnixMs") - ms(s, "startedAtUnixMs"))):
    print(f"    {s.get('service', '?') + ' (short-term)':<40} {(ms(s, 'finishedAtUnixMs') - ms(s, 'startedAtUnixMs')) / 1000:7.2f}s")
ended = {s.get("service"): ms(s, "finishedAtUnixMs") for s in short}
for s in r.get("longTerm", []):
    d = ms(s, "finishedAtUnixMs") - ms(s, "startedAtUnixMs")
    # Only long-term parts that went on after the service's short-term part (search loading).
    if d > 0 and ms(s, "finishedAtUnixMs") > ended.get(s.get("service"), 0): print(f"    {s.get('service', '?') + ' (long-term)':<40} {d / 1000:7.2f}s")
PY2
}

parent="$AUTOMATE_HOME/data/compliance-service"
dump_args="-h $run -p $pg -U automate -d teams_service"
mkdir -p "$work/hand"
ours_runs=(); user_runs=(); floor_runs=(); ready_runs=(); long_runs=(); hand_runs=(); dep_rss=0; cli_rss=0
# Where the stack's backups go: its home's folder, then, after each restore, the copy it adopted.
stack_repo="$AUTOMATE_HOME/backups"
for i in $(seq 1 "$runs"); do
  echo "bench-backup: run $i of $runs" >&2
  # --- backup -------------------------------------------------------------------------------------
  t0=$(now)
  with_rss "$automate" backup create --no-progress 3>"$work/cli-rss" >"$work/create.out"
  t1=$(now)
  ours_runs+=("$(elapsed "$t0" "$t1")")
  cli_rss=$(( $(cat "$work/cli-rss") > cli_rss ? $(cat "$work/cli-rss") : cli_rss ))
  d=$(peak_rss_of "$(service_pid deployment-service)"); dep_rss=$(( d > dep_rss ? d : dep_rss ))
  id=$(awk '/^Created backup/ {print $3}' "$work/create.out")
  [[ -n "$id" ]] || { echo "bench-backup: backup create printed no id:" >&2; cat "$work/create.out" >&2; exit 1; }
  backup_bytes=$(du -sb "$stack_repo/$id" | cut -f1)
  echo "  backup $id, run $i: where the time went" > "$work/phases-backup-$i.txt"
  backup_phases "$stack_repo/$id/backup-result.json" >> "$work/phases-backup-$i.txt"

  user_runs+=("$(by_hand "pg_dump -Fc $dump_args -f $work/hand/db.dump" "tar czf $work/hand/files.tgz -C $parent profiles")")
  rm -f "$work/hand/"*
  floor_runs+=("$(by_hand "pg_dump -Fc -Z0 $dump_args | zstd -1 -q > $work/hand/db.fc.zst" "tar cf - -C $parent profiles | zstd -1 -q > $work/hand/files.tar.zst")")
  rm -f "$work/hand/"*

  # --- restore ------------------------------------------------------------------------------------
  repo="$work/repository-$i"
  cp -a "$stack_repo" "$repo"
  "$automate" stop >/dev/null
  rm -rf "$AUTOMATE_HOME"
  [[ "$stack_repo" == "$work"/repository-* ]] && rm -rf "$stack_repo"
  stack_repo="$repo"
  write_overlays
  t0=$(now)
  # A new machine: the copy becomes its repository (without --adopt-repository the restore would
  # also wait for the search data and reload the stack onto a repository that does not exist here).
  "$automate" restore "$repo" "$id" --no-progress --adopt-repository >"$work/restore.out"
  t1=$(now)
  ready_runs+=("$(elapsed "$t0" "$t1")")
  restore_id=$(grep -o '(restore [^)]*)' "$work/restore.out" | tr -d '()' | awk '{print $2}')
  status_json() { "$automate" restore status "$restore_id" --json > "$work/restore-status.json"; }
  status_json
  until python3 -c "import json,sys; sys.exit(0 if int(json.load(open(sys.argv[1])).get('finishedAtUnixMs','0') or 0) else 1)" "$work/restore-status.json"; do
    grep -q '"longTermState": "FAILED"' "$work/restore-status.json" && { echo "bench-backup: restore failed" >&2; exit 1; }
    sleep 0.2
    status_json
  done
  long_done=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['finishedAtUnixMs'])" "$work/restore-status.json")
  long_runs+=("$(python3 -c "print(f'{$long_done / 1000 - $t0:.2f}')")")
  echo "  restore $restore_id, run $i: where the time went" > "$work/phases-restore-$i.txt"
  restore_phases "$work/restore-status.json" "$t0" >> "$work/phases-restore-$i.txt"
  rows_after=$(psql_ -d teams_service -Atc "SELECT count(*) FROM bench")
  [[ "$rows_after" == "$rows" ]] || { echo "bench-backup: restored $rows_after rows, expected $rows" >&2; exit 1; }

  dump="$repo/$id/teams-service/pg_data/teams_service.fc.zst"
  tarball="$repo/$id/compliance-service/files/profiles.tar.zst"
  psql_ -d postgres -c "CREATE DATABASE bench_by_hand" >/dev/null
  mkdir -p "$work/hand/x"
  hand_runs+=("$(by_hand "zstd -dc $dump | pg_restore -h $run -p $pg -U automate -d bench_by_hand --no-owner" "zstd -dc $tarball | tar xf - -C $work/hand/x")")
  psql_ -d postgres -c "DROP DATABASE bench_by_hand" >/dev/null
  rm -rf "$work/hand/x"
done

ours=$(median "${ours_runs[@]}"); user_time=$(median "${user_runs[@]}"); floor_time=$(median "${floor_runs[@]}")
restore_ready=$(median "${ready_runs[@]}"); restore_long=$(median "${long_runs[@]}"); hand_restore=$(median "${hand_runs[@]}")
list() { local IFS=' '; echo "$*"; }

echo
echo "== where the time went (per run)"
cat "$work"/phases-backup-*.txt "$work"/phases-restore-*.txt
echo
echo "== automate backup/restore: ${db_mb} MB database + ${files_mb} MB files (db $(( db_size >> 20 )) MB on disk, backup $(( backup_bytes >> 20 )) MB), $runs runs"
printf '%-52s runs: %s\n' "automate backup create" "$(list "${ours_runs[@]}")"
printf '%-52s runs: %s\n' "pg_dump -Fc -Z0 | zstd ∥ tar cf - | zstd (floor)" "$(list "${floor_runs[@]}")"
printf '%-52s runs: %s\n' "automate restore: command to all ready" "$(list "${ready_runs[@]}")"
printf '%-52s runs: %s\n' "zstd -dc | pg_restore ∥ zstd -dc | tar xf (by hand)" "$(list "${hand_runs[@]}")"
printf '%-52s %8s MB\n' "deployment-service peak RSS (backup)" "$dep_rss"
printf '%-52s %8s MB\n' "automate CLI peak RSS (backup create)" "$cli_rss"
echo
echo "== medians"
printf '%-52s %8ss\n' "automate backup create" "$ours"
printf '%-52s %8ss   automate is %sx faster (target >= 8x)\n' "pg_dump -Fc ∥ tar czf (by hand)" "$user_time" "$(ratio "$user_time" "$ours")"
printf '%-52s %8ss\n' "automate restore: command to all ready" "$restore_ready"
printf '%-52s %8ss\n' "automate restore: command to long-term done" "$restore_long"
printf '%-52s %8ss   automate / floor = %sx (target <= 1.2x)\n' "pg_dump -Fc -Z0 | zstd ∥ tar cf - | zstd (floor)" "$floor_time" "$(ratio "$ours" "$floor_time")"
printf '%-52s %8ss   automate / by hand = %sx (target <= 1.15x)\n' "zstd -dc | pg_restore ∥ zstd -dc | tar xf (by hand)" "$hand_restore" "$(ratio "$restore_ready" "$hand_restore")"

# --- chunked repository, restic beside it ------------------------------------------------------------
command -v restic >/dev/null || { echo "bench-backup: restic is missing: apt-get install restic (or scripts/install.sh --deps)" >&2; exit 1; }
echo "bench-backup: the same data into a chunked repository, and into restic" >&2
"$automate" stop >/dev/null
chunked="$work/chunked"
mkdir -p "$chunked"
if [[ $(id -u) -eq 0 ]]; then chown automate-backup-gateway "$chunked"; chmod 700 "$chunked"; fi
write_overlays
printf 'repository = "%s"\n' "$chunked" >> "$AUTOMATE_HOME/config/backup-gateway.toml"
"$automate" start --quiet
export RESTIC_REPOSITORY="$work/restic" RESTIC_PASSWORD="bench-backup restic"
restic init -q >/dev/null
# Each backup below starts from a quiet disk (sync first): what an earlier step left for writeback
# would otherwise land on whichever backup runs next.
restic_backup() {  # files as a folder, the dump through --stdin, at once (as the stack does)
  sync
  by_hand "restic -q backup $profiles >/dev/null" \
          "pg_dump -Fc -Z0 $dump_args | restic -q backup --stdin --stdin-filename teams_service.dump >/dev/null"
}
chunked_backup() {  # prints seconds; the id goes to $work/chunked-id
  local t0 t1
  sync
  t0=$(now)
  "$automate" backup create --no-progress > "$work/chunked.out"
  t1=$(now)
  awk '/^Created backup/ {print $3}' "$work/chunked.out" > "$work/chunked-id"
  [[ -s "$work/chunked-id" ]] || { echo "bench-backup: chunked backup failed:" >&2; cat "$work/chunked.out" >&2; exit 1; }
  { echo "  chunked backup $(cat "$work/chunked-id"): where the time went"
    backup_phases "$chunked/$(cat "$work/chunked-id")/backup-result.json"; } >> "$work/phases-chunked.txt"
  elapsed "$t0" "$t1"
}
size_of() { du -sb "$1" | cut -f1; }
change_two_percent() {  # $1: round. 2% of the files (by count) rewritten, 2% more rows.
  python3 - "$profiles" "$1" <<'PY'
import os, random, sys
root, round_ = sys.argv[1], int(sys.argv[2])
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
random.seed(round_)
for path in random.sample(files, max(1, len(files) // 50)):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(size))
PY
  local extra=$(( rows / 50 )) base=$(( rows + $1 * rows ))
  psql_ -d teams_service -c "INSERT INTO bench SELECT g, md5(g::text) || md5((g*3)::text) || md5((g*7)::text), now() FROM generate_series($base + 1, $base + $extra) g" >/dev/null
}

c1=$(chunked_backup); c1_bytes=$(size_of "$chunked/chunks")
r1=$(restic_backup); r1_bytes=$(size_of "$work/restic")
change_two_percent 1
c2=$(chunked_backup); c2_added=$(( $(size_of "$chunked/chunks") - c1_bytes ))
r2=$(restic_backup); r2_added=$(( $(size_of "$work/restic") - r1_bytes ))
grep -o '([^)]*)' "$work/chunked.out" | head -1 > "$work/chunked-second.txt"
# Every later round is an incremental backup of the same kind: their times too, for medians beside the
# single second backup (one run of a 6-9 s measure moves by a second with what the disk is still writing).
incr_chunked=("$c2"); incr_restic=("$r2")
for round in 2 3 4 5 6; do
  change_two_percent "$round"
  incr_chunked+=("$(chunked_backup)")
  incr_restic+=("$(restic_backup)")
done
seven_bytes=$(size_of "$chunked/chunks"); restic_seven=$(size_of "$work/restic")
last=$(cat "$work/chunked-id")

# Restore from the chunked repository on a "new machine", against the same work by hand.
passphrase="$work/passphrase"
"$automate" backup key export --to "$passphrase" 2>/dev/null
mkdir -p "$work/hand"
pg_dump -Fc -Z0 $dump_args | zstd -1 -q > "$work/hand/db.fc.zst"
tar cf - -C "$parent" profiles | zstd -1 -q > "$work/hand/files.tar.zst"
rows_now=$(psql_ -d teams_service -Atc "SELECT count(*) FROM bench")
# `runs` times, as the plain restores above: each into a fresh home from a fresh copy of the repository
# (a restore adopts the copy), then the same work by hand on the restored stack's PostgreSQL.
copy="$work/chunked-copy"
chunked_restores=(); chunked_hands=()
for r in $(seq 1 "$runs"); do
  rm -rf "$copy" "$work/hand/x"
  cp -a "$chunked" "$copy"
  "$automate" stop >/dev/null
  rm -rf "$AUTOMATE_HOME"
  write_overlays
  t0=$(now)
  "$automate" restore "$copy" "$last" --passphrase-file "$passphrase" --no-progress --adopt-repository > "$work/restore-chunked.out"
  t1=$(now)
  chunked_restores+=("$(elapsed "$t0" "$t1")")
  rows_after=$(psql_ -d teams_service -Atc "SELECT count(*) FROM bench")
  [[ "$rows_after" == "$rows_now" ]] || { echo "bench-backup: chunked restore gave $rows_after rows, expected $rows_now" >&2; exit 1; }
  psql_ -d postgres -c "CREATE DATABASE bench_by_hand" >/dev/null
  mkdir -p "$work/hand/x"
  chunked_hands+=("$(by_hand "zstd -dc $work/hand/db.fc.zst | pg_restore -h $run -p $pg -U automate -d bench_by_hand --no-owner" "zstd -dc $work/hand/files.tar.zst | tar xf - -C $work/hand/x")")
  psql_ -d postgres -c "DROP DATABASE bench_by_hand" >/dev/null
done
chunked_restore=$(median "${chunked_restores[@]}"); chunked_hand=$(median "${chunked_hands[@]}")

echo
echo "== where the chunked backups' time went"
cat "$work/phases-chunked.txt"
echo
echo "== chunked repository vs restic (same data; one run of each backup, $runs of the restore)"
printf '%-52s %8ss   chunked / plain (median above) = %sx (target <= 1.3x)\n' "first backup, chunked" "$c1" "$(ratio "$c1" "$ours")"
printf '%-52s %8ss   (%s MB stored; restic %s MB)\n' "first backup, restic" "$r1" "$(( c1_bytes >> 20 ))" "$(( r1_bytes >> 20 ))"
printf '%-52s %8ss   %s\n' "second backup (2% changed), chunked" "$c2" "$(cat "$work/chunked-second.txt")"
printf '%-52s %8ss   chunked / restic = %sx (target < 1)\n' "second backup (2% changed), restic" "$r2" "$(ratio "$c2" "$r2")"
printf '%-52s runs: %s\n' "incremental backups (2% changed each), chunked" "$(list "${incr_chunked[@]}")"
printf '%-52s runs: %s\n' "incremental backups (2% changed each), restic" "$(list "${incr_restic[@]}")"
incr_c=$(median "${incr_chunked[@]}"); incr_r=$(median "${incr_restic[@]}")
printf '%-52s %8ss   restic %ss: chunked / restic = %sx (target < 1; medians)\n' "incremental backups, medians" "$incr_c" "$incr_r" "$(ratio "$incr_c" "$incr_r")"
printf '%-52s %8s MB   %s%% of the first (target <= 2%%); restic added %s MB\n' "second backup, bytes added" \
  "$(python3 -c "print(f'{$c2_added / 1048576:.1f}')")" "$(python3 -c "print(f'{$c2_added * 100 / $c1_bytes:.2f}')")" \
  "$(python3 -c "print(f'{$r2_added / 1048576:.1f}')")"
printf '%-52s %8s MB   %sx one backup; restic %s MB\n' "repository after seven backups" "$(( seven_bytes >> 20 ))" \
  "$(ratio "$seven_bytes" "$c1_bytes")" "$(( restic_seven >> 20 ))"
printf '%-52s runs: %s\n' "restore from chunked: command to all ready" "$(list "${chunked_restores[@]}")"
printf '%-52s runs: %s\n' "zstd -dc | pg_restore ∥ zstd -dc | tar xf (by hand)" "$(list "${chunked_hands[@]}")"
printf '%-52s %8ss   chunked / by hand = %sx (target <= 1.15x; medians)\n' "restore from chunked: command to all ready" "$chunked_restore" "$(ratio "$chunked_restore" "$chunked_hand")"
printf '%-52s %8ss\n' "zstd -dc | pg_restore ∥ zstd -dc | tar xf (by hand)" "$chunked_hand"
