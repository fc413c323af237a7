#!/usr/bin/env bash
# bench-sidecars.sh: one run, this machine, throw-away PostgreSQL/gateway/osmem-server in a temp folder.
#
#   dump+upload through pg-sidecar-service   vs  pg_dump -Fc > file            (target: >= 5x faster)
#                                            vs  pg_dump -Fc -Z0 | zstd -1 > file (the floor: <= 1.15x)
#   restore through pg-sidecar-service       vs  zstd -dc file | pg_restore    (target: <= 1.1x)
#   export/import of N documents (es-sidecar-service save/load, the export code) in docs/s
#   the sidecars' peak RSS (VmHWM)                                              (target: <= 64 MB)
#
# Environment: BENCH_DB_MB (default 1024: size of the generated database), BENCH_DOCS (100000),
# GATEWAY_BIN (default: a release build of backup-gateway, built here if missing). Needs PostgreSQL 15,
# zstd, curl and osmem-server (scripts/install.sh --deps).
#
#   scripts/bench-sidecars.sh --smoke    a 4 MB database, 1,000 documents, debug build (the test suite runs it)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
root="$bench_repo"
cd "$root"
db_mb="${BENCH_DB_MB:-1024}"
docs="${BENCH_DOCS:-100000}"
if [[ $bench_smoke -eq 1 ]]; then db_mb=4; docs=1000; fi
pgbin=/usr/lib/postgresql/15/bin
scratch="$root/.build-sidecar-release"

for tool in "$pgbin/initdb" zstd curl; do
  command -v "$tool" >/dev/null || { echo "bench-sidecars: $tool missing: run scripts/install.sh --deps" >&2; exit 1; }
done
osmem="$(command -v osmem-server || true)"
[[ -n "$osmem" ]] || osmem=/opt/automate/venv/bin/osmem-server
[[ -x "$osmem" ]] || { echo "bench-sidecars: osmem-server missing: run scripts/install.sh --deps" >&2; exit 1; }

if [[ $bench_smoke -eq 1 ]]; then
  scratch_bin="$(bench_binaries bench-sidecars pg-sidecar-service es-sidecar-service backup-gateway)"
else
  echo "bench-sidecars: release build (once)" >&2
  swift build -c release --scratch-path "$scratch" --product pg-sidecar-service >/dev/null
  swift build -c release --scratch-path "$scratch" --product es-sidecar-service >/dev/null
  scratch_bin="$scratch/release"
fi
gateway="${GATEWAY_BIN:-}"
if [[ -z "$gateway" ]]; then
  [[ $bench_smoke -eq 1 ]] || swift build -c release --scratch-path "$scratch" --product backup-gateway >/dev/null
  gateway="$scratch_bin/backup-gateway"
fi
pgside="$scratch_bin/pg-sidecar-service"
esside="$scratch_bin/es-sidecar-service"

work="$(mktemp -d /tmp/bench-sidecars.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  chown automate: "$work"
  as_pg=(setpriv --reuid=automate --regid=automate --init-groups)
fi

# PostgreSQL
pgport=$(free_port)
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg" -U automate --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
"${as_pg[@]}" "$pgbin/postgres" -D "$work/pg" -k "$work" -c listen_addresses= -p "$pgport" -c shared_buffers=256MB \
  -c max_wal_size=4GB >"$work/pg.log" 2>&1 &
pids+=($!)
until "$pgbin/pg_isready" -q -h "$work" -p "$pgport"; do sleep 0.1; done
psql=("$pgbin/psql" -X -q -h "$work" -p "$pgport" -U automate)

rows=$(( db_mb * 1024 * 1024 / 170 ))
echo "bench-sidecars: generating a ~${db_mb} MB database ($rows rows)" >&2
"${psql[@]}" -d postgres -c "CREATE DATABASE bench"
"${psql[@]}" -d bench -c "CREATE TABLE t (id bigint PRIMARY KEY, a text, b text, n numeric, at timestamptz);
  INSERT INTO t SELECT g, md5(g::text) || md5((g*3)::text), md5(random()::text) || ' ünïcödé', g / 7.0,
    now() - g * interval '1 second' FROM generate_series(1, $rows) g;
  CREATE TABLE s AS SELECT g AS id, repeat('x', 50) || g AS v FROM generate_series(1, $((rows / 10))) g;"
"${psql[@]}" -d bench -c "VACUUM ANALYZE"
dbsize=$("${psql[@]}" -d postgres -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")

# Gateway (filesystem mode) as the S3 endpoint
gwport=$(free_port)
mkdir -p "$work/repo/backups"
printf 'AKATBENCHBENCHBENCH0\n%s\n' "benchsecretbenchsecretbenchsecretbench00" >"$work/gw.creds"
chmod 600 "$work/gw.creds"
"$gateway" --listen "127.0.0.1:$gwport" --root "$work/repo" --credentials-file "$work/gw.creds" >"$work/gw.log" 2>&1 &
pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$gwport/"; do sleep 0.1; done

# pg-sidecar-service
export AUTOMATE_SERVICE_SOCKET="$work/pg-sidecar-service.sock" AUTOMATE_CFG_S3_ENDPOINT="http://127.0.0.1:$gwport" \
  AUTOMATE_CFG_S3_BUCKET=backups AUTOMATE_CFG_S3_CREDENTIALS="$work/gw.creds" AUTOMATE_CFG_PG_HOST="$work" \
  AUTOMATE_CFG_PG_PORT="$pgport" AUTOMATE_CFG_PG_USER=automate
"$pgside" >"$work/pgside.log" 2>&1 &
sidepid=$!
pids+=($sidepid)
until [[ -S "$AUTOMATE_SERVICE_SOCKET" ]]; do sleep 0.1; done

echo "bench-sidecars: dumps" >&2
t0=$(now); "$pgside" backup "$AUTOMATE_SERVICE_SOCKET" 20260101000000 bench-service bench >"$work/backup.json"; t1=$(now)
side_dump=$(elapsed "$t0" "$t1")
obj="$work/repo/backups/20260101000000/bench-service/pg_data/bench.fc.zst"
side_size=$(stat -c %s "$obj")

pgd=("$pgbin/pg_dump" -h "$work" -p "$pgport" -U automate -d bench)
t0=$(now); "${pgd[@]}" -Fc >"$work/plain.fc"; t1=$(now)
plain_dump=$(elapsed "$t0" "$t1"); plain_size=$(stat -c %s "$work/plain.fc"); rm -f "$work/plain.fc"
t0=$(now); "${pgd[@]}" -Fc -Z0 | zstd -1 -q >"$work/floor.fc.zst"; t1=$(now)
floor_dump=$(elapsed "$t0" "$t1"); floor_size=$(stat -c %s "$work/floor.fc.zst")
# What the gateway alone costs: the floor's finished file in one signed PUT (curl signs SigV4 itself).
t0=$(now)
curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "AKATBENCHBENCHBENCH0:benchsecretbenchsecretbenchsecretbench00" \
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$work/floor.fc.zst" "http://127.0.0.1:$gwport/backups/floor/floor.fc.zst"
t1=$(now)
gw_put=$(elapsed "$t0" "$t1")

echo "bench-sidecars: restores" >&2
"${psql[@]}" -d postgres -c "CREATE DATABASE floor_restore"
t0=$(now); zstd -dc "$work/floor.fc.zst" | "$pgbin/pg_restore" -h "$work" -p "$pgport" -U automate -d floor_restore --no-owner; t1=$(now)
floor_restore=$(elapsed "$t0" "$t1")
"${psql[@]}" -d postgres -c "DROP DATABASE floor_restore"
t0=$(now); "$pgside" restore "$AUTOMATE_SERVICE_SOCKET" 20260101000000 bench-service >"$work/restore.json"; t1=$(now)
side_restore=$(elapsed "$t0" "$t1")
pg_rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$sidepid/status")

echo "bench-sidecars: search export/import ($docs documents)" >&2
esport=$(free_port)
"$osmem" -addr "127.0.0.1:$esport" -no-stdin-watch >"$work/osmem.log" 2>&1 &
pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$esport/_cluster/health"; do sleep 0.1; done
curl -s -XPUT "http://127.0.0.1:$esport/bench" -H 'Content-Type: application/json' \
  -d '{"mappings":{"properties":{"title":{"type":"text"},"tag":{"type":"keyword"},"n":{"type":"integer"}}}}' >/dev/null
python3 - "$docs" "$work/docs.ndjson" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"index": {"_index": "bench", "_id": f"d{i}"}}) + "\n")
        f.write(json.dumps({"title": f"document {i} ünïcödé", "tag": f"t{i % 97}", "n": i}, ensure_ascii=False) + "\n")
PY
split -l 20000 "$work/docs.ndjson" "$work/chunk."
for c in "$work"/chunk.*; do
  curl -s -XPOST "http://127.0.0.1:$esport/_bulk" -H 'Content-Type: application/x-ndjson' --data-binary @"$c" >/dev/null
done
curl -s -XPOST "http://127.0.0.1:$esport/bench/_refresh" >/dev/null
/usr/bin/time -f '%M' -o "$work/save.rss" "$esside" save "http://127.0.0.1:$esport" "$work/search" >/dev/null
t0=$(now); "$esside" save "http://127.0.0.1:$esport" "$work/search" >/dev/null; t1=$(now)
export_s=$(elapsed "$t0" "$t1")
curl -s -XDELETE "http://127.0.0.1:$esport/bench" >/dev/null
t0=$(now); /usr/bin/time -f '%M' -o "$work/load.rss" "$esside" load "http://127.0.0.1:$esport" "$work/search" >/dev/null; t1=$(now)
import_s=$(elapsed "$t0" "$t1")
es_rss=$(( $(sort -n "$work/save.rss" "$work/load.rss" | tail -1) / 1024 ))

cat <<EOF

bench-sidecars ($(nproc) cores, database $dbsize, $(date -u +%Y-%m-%dT%H:%MZ))
  dump+upload, pg-sidecar-service (-Z0 | zstd -1 | gateway)   ${side_dump} s   $((side_size / 1048576)) MiB
  pg_dump -Fc > file                                          ${plain_dump} s   $((plain_size / 1048576)) MiB   sidecar is $(ratio "$plain_dump" "$side_dump")x faster
  pg_dump -Fc -Z0 | zstd -1 > file (floor)                    ${floor_dump} s   $((floor_size / 1048576)) MiB   sidecar/floor = $(ratio "$side_dump" "$floor_dump")
  (that file's single PUT to the gateway alone                ${gw_put} s)
  restore, pg-sidecar-service (temp db, sha256, row counts)   ${side_restore} s
  zstd -dc file | pg_restore (floor)                          ${floor_restore} s   sidecar/floor = $(ratio "$side_restore" "$floor_restore")
  pg-sidecar-service peak RSS                                 ${pg_rss} MB
  search export ($docs docs)                                  ${export_s} s   $(python3 -c "print(int($docs / max($export_s, 0.01)))") docs/s
  search import ($docs docs)                                  ${import_s} s   $(python3 -c "print(int($docs / max($import_s, 0.01)))") docs/s
  es-sidecar-service peak RSS                                 ${es_rss} MB
EOF
