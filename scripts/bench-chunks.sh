#!/usr/bin/env bash
# bench-chunks: the chunked repository format (ChunkStore: FastCDC, zstd, AES-256-GCM, packs) against
# restic (Debian's) and today's plain format, on the same data in the same run:
#   - first backup of a folder of mixed files (half random, half text; as a tar stream, chunked with the
#     tar layout: every large member chunked on its own) and a dump-like text stream (through stdin for
#     both tools);
#   - 2% of the files rewritten and 2% rows appended to the dump, then a second backup: time and bytes added;
#   - a restore of the second backup of the dump (read back through every check).
# The plain format is what the sidecars do today: tar | zstd -1 and zstd -1 of the dump, whole files.
#
#   scripts/bench-chunks.sh [--smoke]     (BENCH_MIB: data size, default 1024; smoke: 8)
# Needs: swift, restic, zstd, python3 (scripts/install.sh --deps installs them).
set -euo pipefail
source "$(dirname "$0")/lib/bench.sh"
for t in restic zstd tar python3; do
  command -v "$t" >/dev/null || { echo "bench-chunks: $t is missing: apt-get install restic zstd (or scripts/install.sh --deps)" >&2; exit 1; }
done
mib=${BENCH_MIB:-1024}
[[ $bench_smoke -eq 1 ]] && mib=8
bin=$(bench_binaries bench-chunks chunkstore-bench)

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-chunks.XXXXXX")
trap 'rm -rf "$work"' EXIT
export AUTOMATE_BACKUP_PASSPHRASE="bench-chunks passphrase" RESTIC_PASSWORD="bench-chunks passphrase"
data=$work/data dump=$work/dump.sql
mkdir -p "$data"

# Files: 1 MiB each (at least 8), half random, half text; the dump: text rows, as big as the files.
python3 - "$data" "$dump" "$mib" <<'PY'
import os, random, sys
data, dump, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = max(8, mib // 2)
random.seed(1)
for i in range(files):
    with open(f"{data}/f{i:05d}.bin", "wb") as f:
        if i % 2 == 0:
            f.write(os.urandom(1 << 20))
        else:
            f.write("".join(f"line {i} {j} {random.random():.12f}\n" for j in range(32000)).encode()[: 1 << 20])
with open(dump, "w") as f:
    target, n = (mib // 2) << 20, 0
    while f.tell() < target:
        f.write(f"{n}\tcustomer-{n % 977}\t{random.random():.12f}\tsome text that repeats in every row\n")
        n += 1
PY
size=$(du -sb "$data" "$dump" | awk '{s+=$1} END{print s}')
echo "data: $(( size >> 20 )) MiB (files $(ls "$data" | wc -l), dump $(( $(stat -c %s "$dump") >> 20 )) MiB)"

chunked() {  # chunked NAME-SUFFIX: both artifacts into the chunked repository; prints seconds
  local start; start=$(now)
  tar -C "$data" -cf - . | "$bin/chunkstore-bench" write --tar "$work/chunked" "files$1" > "$work/chunked-files$1.out"
  "$bin/chunkstore-bench" write "$work/chunked" "dump$1" < "$dump" > "$work/chunked-dump$1.out"
  elapsed "$start" "$(now)"
}
resticrun() {
  local start; start=$(now)
  restic -q -r "$work/restic" backup "$data" >/dev/null
  restic -q -r "$work/restic" backup --stdin --stdin-filename dump.sql < "$dump" >/dev/null
  elapsed "$start" "$(now)"
}
plain() {  # plain NAME-SUFFIX: today's format, whole files
  local start; start=$(now)
  mkdir -p "$work/plain$1"
  tar -C "$data" -cf - . | zstd -q -1 -T1 > "$work/plain$1/files.tar.zst"
  zstd -q -1 -T1 < "$dump" > "$work/plain$1/dump.sql.zst"
  sync -f "$work/plain$1/files.tar.zst"
  elapsed "$start" "$(now)"
}
bytes() { du -sb "$1" | cut -f1; }

restic -q -r "$work/restic" init >/dev/null
sync
p1=$(plain 1); c1=$(chunked 1); r1=$(resticrun)
cbytes1=$(bytes "$work/chunked"); rbytes1=$(bytes "$work/restic"); pbytes1=$(bytes "$work/plain1")

# 2% change: rewrite every 50th file with new random bytes, append 2% rows to the dump. The new data
# itself (rewritten files and appended rows, zstd -1) is the floor of what any second backup adds.
dumpsize=$(stat -c %s "$dump")
python3 - "$data" "$dump" > "$work/changed" <<'PY'
import os, sys
data, dump = sys.argv[1], sys.argv[2]
names = sorted(os.listdir(data))
for name in names[::50]:
    with open(f"{data}/{name}", "wb") as f:
        f.write(os.urandom(1 << 20))
    print(f"{data}/{name}")
grow = os.path.getsize(dump) // 50
with open(dump, "a") as f:
    n = 0
    while n * 60 < grow:
        f.write(f"new-{n}\tcustomer-{n % 977}\t0.5\tappended rows of the second day\n")
        n += 1
PY
floor=$({ xargs cat < "$work/changed"; tail -c +$(( dumpsize + 1 )) "$dump"; } | zstd -q -1 | wc -c)
sync
p2=$(plain 2); c2=$(chunked 2); r2=$(resticrun)
cadded=$(( $(bytes "$work/chunked") - cbytes1 )); radded=$(( $(bytes "$work/restic") - rbytes1 ))

start=$(now); "$bin/chunkstore-bench" read "$work/chunked" dump2 > "$work/restored.sql"; cread=$(elapsed "$start" "$(now)")
cmp -s "$dump" "$work/restored.sql" || { echo "bench-chunks: the restored dump differs from the original" >&2; exit 1; }
start=$(now); restic -q -r "$work/restic" dump latest dump.sql > "$work/restic-restored.sql"; rread=$(elapsed "$start" "$(now)")

echo "== first backup"
echo "plain (tar|zstd, whole files): ${p1}s, $(( pbytes1 >> 20 )) MiB"
echo "chunked: ${c1}s, $(( cbytes1 >> 20 )) MiB; restic: ${r1}s, $(( rbytes1 >> 20 )) MiB"
echo "chunked / plain = $(ratio "$c1" "$p1") (target <= 1.3); chunked / restic = $(ratio "$c1" "$r1")"
echo "== second backup (2% of the files rewritten, 2% rows appended)"
echo "plain: ${p2}s, $(( $(bytes "$work/plain2") >> 20 )) MiB again"
echo "chunked: ${c2}s, added $(( cadded >> 10 )) KiB; restic: ${r2}s, added $(( radded >> 10 )) KiB"
echo "chunked added / first = $(python3 -c "print(f'{$cadded / max($cbytes1, 1) * 100:.1f}%')") (target <= 2%); restic added / first = $(python3 -c "print(f'{$radded / max($rbytes1, 1) * 100:.1f}%')")"
echo "the new data itself (zstd -1): $(( floor >> 10 )) KiB = $(python3 -c "print(f'{$floor / max($cbytes1, 1) * 100:.1f}%')") of the first (no second backup adds less)"
echo "chunked / restic (second backup time) = $(ratio "$c2" "$r2") (target < 1)"
echo "== restore of the dump"
echo "chunked: ${cread}s; restic dump: ${rread}s; chunked / restic = $(ratio "$cread" "$rread")"
