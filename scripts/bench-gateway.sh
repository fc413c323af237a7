#!/usr/bin/env bash
# Benchmarks the backup-gateway (fs mode, release build) on this machine, in one run on one disk:
#   1. curl --aws-sigv4 PUT/GET of a 1 GiB file through the gateway vs the same curl PUT/GET against
#      nginx (Debian's, WebDAV PUT location, own temp config on a loopback port), and the PUT vs the disk's
#      durable write speed (`dd conv=fdatasync` of the same file): the gateway answers a PUT once the object
#      is on disk (fsync), nginx as soon as it is in the page cache;
#   2. `aws s3 cp` up/down through the gateway vs against moto_server;
#   3. N concurrent boto3 uploads of M MiB each (default 100 x 4 MiB);
#   4. the gateway's peak RSS (VmHWM, reset before each case through /proc/PID/clear_refs) per case.
# Usage: scripts/bench-gateway.sh [--smoke] [SIZE_MIB]   (default 1024; --smoke: 8 MiB and 10 x 1 MiB, a quick check
#        that every case runs). BENCH_RUNS (default 3) runs of the curl case, medians printed.
# Needs: swift, curl, nginx, aws, moto_server, python3 with boto3 (scripts/install.sh --deps).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
repo="$bench_repo"
smoke=$bench_smoke
if [ "${1:-}" = "--smoke" ]; then shift; fi
size_mib=${1:-1024}
conc_n=100; conc_mib=4
runs=${BENCH_RUNS:-3}
# GETs of the file per run and server: a GET from the page cache takes a fraction of a second and varies by
# ±30% from one to the next on a 2-core machine, so each run takes several (medians over all of them).
gets=${BENCH_GETS:-5}
if [ "$smoke" = 1 ]; then size_mib=${1:-8}; conc_n=10; conc_mib=1; runs=2; gets=2; fi
for t in curl nginx aws moto_server python3; do
  command -v "$t" >/dev/null || { echo "bench-gateway: $t not found: run scripts/install.sh --deps" >&2; exit 1; }
done

# The package's own release build (debug binaries in smoke mode), as every benchmark script uses.
bin="$(bench_binaries bench-gateway backup-gateway)/backup-gateway"

# Same disk as the repository checkout.
work=$(mktemp -d "${BENCH_DIR:-$repo}/.bench-gateway.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "bench-gateway: $1 did not come up" >&2; exit 1; }
# Peak RSS of the gateway since the last reset, in MiB; `reset_peak` starts a new measurement.
reset_peak() { echo 5 > "/proc/$gpid/clear_refs"; }
peak_mib() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$gpid/status"; }
# CPU time (user + system) the gateway has used so far, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$gpid/stat"; }
# cpu_secs T0 T1 [N]: the CPU seconds between two cpu_ticks readings, divided by N (default 1).
cpu_secs() { python3 -c "import os, sys; print('%.2f' % ((int(sys.argv[2]) - int(sys.argv[1])) / os.sysconf('SC_CLK_TCK') / int(sys.argv[3])))" "$1" "$2" "${3:-1}"; }
mbps() { python3 -c "import sys; print('%.0f' % ($size_mib / max(float(sys.argv[1]), 1e-3)))" "$1"; }
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null || { echo "bench-gateway: failed: $*" >&2; return 1; }; e=$(date +%s.%N); python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$s" "$e"; }

mkdir -p "$work/root/bench" "$work/nginx/root" "$work/nginx/tmp" "$work/nginx/logs"
echo "==> making a ${size_mib} MiB file"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/src"
key=BENCHGATEWAYKEY; secret=bench-gateway-secret
printf '%s\n%s\n' "$key" "$secret" > "$work/creds"; chmod 600 "$work/creds"

gport=$(free_port)
"$bin" --listen "127.0.0.1:$gport" --root "$work/root" --credentials-file "$work/creds" --log-level warning 2>"$work/gateway.log" &
gpid=$!; pids+=("$gpid")
wait_http "http://127.0.0.1:$gport/healthz"

nport=$(free_port)
nginx_user=""
[ "$(id -u)" -eq 0 ] && nginx_user="user root root;"   # workers must write into this temp folder
cat > "$work/nginx/nginx.conf" <<CONF
$nginx_user
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp;
  sendfile on;
  server {
    listen 127.0.0.1:$nport;
    location / {
      root $work/nginx/root;
      dav_methods PUT DELETE;
      create_full_put_path on;
      client_max_body_size 0;
    }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=("$!")
wait_http "http://127.0.0.1:$nport/"

sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
reset_peak
echo "==> curl: gateway vs nginx (${size_mib} MiB, loopback, same disk), $runs runs of a PUT and $gets GETs, medians"
# Each run measures both servers and the disk; the order alternates between runs, and every upload starts
# with nothing left to write back (`sync`, not timed), so no measure pays for the one before it.
g_ups=(); g_downs=(); n_ups=(); n_downs=(); d_ups=(); cpu_ups=(); cpu_downs=()
gateway_up() {
  sync; local c0; c0=$(cpu_ticks)
  g_ups+=("$(secs curl -sS -f "${sig[@]}" -T "$work/src" "http://127.0.0.1:$gport/bench/big")")
  local c1; c1=$(cpu_ticks)
  for _ in $(seq 1 "$gets"); do g_downs+=("$(secs curl -sS -f "${sig[@]}" -o /dev/null "http://127.0.0.1:$gport/bench/big")"); done
  cpu_ups+=("$(cpu_secs "$c0" "$c1")"); cpu_downs+=("$(cpu_secs "$c1" "$(cpu_ticks)" "$gets")")
}
nginx_up() {
  sync
  n_ups+=("$(secs curl -sS -f -T "$work/src" "http://127.0.0.1:$nport/big")")
  for _ in $(seq 1 "$gets"); do n_downs+=("$(secs curl -sS -f -o /dev/null "http://127.0.0.1:$nport/big")"); done
}
disk_up() {
  sync
  d_ups+=("$(secs dd if="$work/src" of="$work/nginx/root/durable" bs=1M conv=fdatasync status=none)")
  rm -f "$work/nginx/root/durable"
}
for r in $(seq 1 "$runs"); do
  if (( r % 2 )); then gateway_up; nginx_up; else nginx_up; gateway_up; fi
  disk_up
  printf '  run %d: gateway %s / %s MB/s, nginx %s / %s MB/s (up / median down), disk durable %s MB/s\n' "$r" \
    "$(mbps "${g_ups[-1]}")" "$(mbps "$(median "${g_downs[@]: -$gets}")")" "$(mbps "${n_ups[-1]}")" \
    "$(mbps "$(median "${n_downs[@]: -$gets}")")" "$(mbps "${d_ups[-1]}")"
done
g_up=$(median "${g_ups[@]}"); g_down=$(median "${g_downs[@]}"); n_up=$(median "${n_ups[@]}"); n_down=$(median "${n_downs[@]}")
d_up=$(median "${d_ups[@]}")
cmp -s "$work/src" "$work/root/bench/big" || { echo "bench-gateway: gateway copy differs" >&2; exit 1; }
printf '  %-28s %8s MB/s up  %8s MB/s down\n' "gateway (curl sigv4)" "$(mbps "$g_up")" "$(mbps "$g_down")"
printf '  %-28s %8s MB/s up  %8s MB/s down\n' "nginx (curl, WebDAV PUT)" "$(mbps "$n_up")" "$(mbps "$n_down")"
printf '  %-28s %8s MB/s up\n' "disk, durable (dd fdatasync)" "$(mbps "$d_up")"
printf '  %-28s %8sx up     %8sx down   (targets >= 0.8 up, >= 1.0 down)\n' "gateway / nginx" "$(ratio "$n_up" "$g_up")" "$(ratio "$n_down" "$g_down")"
printf '  %-28s %8sx up     (both wait for the disk)\n' "gateway / durable disk" "$(ratio "$d_up" "$g_up")"
printf '  %-28s %8s s up     %8s s down\n' "gateway CPU per PUT / GET" "$(median "${cpu_ups[@]}")" "$(median "${cpu_downs[@]}")"
rm -f "$work/nginx/root/big"
rss_curl=$(peak_mib)

echo "==> aws s3 cp: gateway vs moto_server"
mport=$(free_port)
moto_server -H 127.0.0.1 -p "$mport" >"$work/moto.log" 2>&1 &
pids+=("$!")
wait_http "http://127.0.0.1:$mport/moto-api/"
export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
aws --endpoint-url "http://127.0.0.1:$mport" s3 mb s3://bench >/dev/null
reset_peak
ga_up=$(secs aws --endpoint-url "http://127.0.0.1:$gport" s3 cp "$work/src" s3://bench/aws --only-show-errors)
rss_aws_up=$(peak_mib); reset_peak
ga_down=$(secs aws --endpoint-url "http://127.0.0.1:$gport" s3 cp s3://bench/aws "$work/down" --only-show-errors)
rss_aws_down=$(peak_mib)
cmp -s "$work/src" "$work/down" || { echo "bench-gateway: aws download differs" >&2; exit 1; }
rm -f "$work/down"
ma_up=$(secs aws --endpoint-url "http://127.0.0.1:$mport" s3 cp "$work/src" s3://bench/aws --only-show-errors)
ma_down=$(secs aws --endpoint-url "http://127.0.0.1:$mport" s3 cp s3://bench/aws "$work/down" --only-show-errors)
rm -f "$work/down"
printf '  %-28s %8s MB/s up  %8s MB/s down\n' "gateway (aws s3 cp)" "$(mbps "$ga_up")" "$(mbps "$ga_down")"
printf '  %-28s %8s MB/s up  %8s MB/s down\n' "moto_server (aws s3 cp)" "$(mbps "$ma_up")" "$(mbps "$ma_down")"
printf '  %-28s %8sx up     %8sx down   (targets >= 2 up, >= 10 down)\n' "gateway / moto" "$(ratio "$ma_up" "$ga_up")" "$(ratio "$ma_down" "$ga_down")"

echo "==> boto3: $conc_n concurrent uploads of $conc_mib MiB"
reset_peak
conc_s=$(secs python3 - "http://127.0.0.1:$gport" "$key" "$secret" "$conc_n" "$conc_mib" <<'PY'
import boto3, hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
url, key, secret, n, mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s3 = boto3.client('s3', endpoint_url=url, aws_access_key_id=key, aws_secret_access_key=secret, region_name='us-east-1',
                  config=Config(max_pool_connections=n, retries={'max_attempts': 1}))
bodies = [os.urandom(mib << 20) for _ in range(4)]
def put(i):
    body = bodies[i % 4]
    etag = s3.put_object(Bucket='bench', Key='conc/%03d' % i, Body=body)['ETag']
    assert etag == '"%s"' % hashlib.md5(body).hexdigest(), etag
with ThreadPoolExecutor(max_workers=n) as ex:
    list(ex.map(put, range(n)))
listed = s3.list_objects_v2(Bucket='bench', Prefix='conc/')['KeyCount']
assert listed == n, listed
PY
)
rss_conc=$(peak_mib)
printf '  %-28s %8s s for %d x %d MiB\n' "boto3 concurrent puts" "$conc_s" "$conc_n" "$conc_mib"

printf '==> gateway peak RSS (VmHWM) per case (target <= 64 MiB)\n'
printf '  %-28s %8s MiB\n' "curl up+down" "$rss_curl" "aws s3 cp up" "$rss_aws_up" "aws s3 cp down" "$rss_aws_down" \
  "boto3 $conc_n x $conc_mib MiB" "$rss_conc"
