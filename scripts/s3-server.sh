#!/usr/bin/env bash
# A throwaway single-node Garage S3 server on loopback for cairn's tests.
#   scripts/s3-server.sh start   build Garage once (cached), start it, create a key and buckets
#   scripts/s3-server.sh env     print the environment the S3 tests read (eval "$(... env)")
#   scripts/s3-server.sh stop    stop it and delete its data
#   scripts/s3-server.sh kill    kill it with SIGKILL, keeping its data (a server that lost power)
#   scripts/s3-server.sh resume  start it again on the data it has (after kill)
# Everything lives under $CAIRN_S3_DIR (default: $TMPDIR/cairn-garage), on ports $CAIRN_S3_PORT
# and $CAIRN_S3_RPC_PORT (default: 3900, 3901): a test may run a private server beside the shared one.
set -euo pipefail

cache="${CAIRN_CI_CACHE:-$HOME/.cache/cairn-ci}"
garage_version="${GARAGE_VERSION:-2.5.0}"
garage="$cache/garage-$garage_version/bin/garage"
dir="${CAIRN_S3_DIR:-${TMPDIR:-/tmp}/cairn-garage}"
conf="$dir/garage.toml"
s3_port="${CAIRN_S3_PORT:-3900}"
rpc_port="${CAIRN_S3_RPC_PORT:-3901}"

build() {
  [ -x "$garage" ] && return
  echo "s3-server: building Garage $garage_version (once; about 10 minutes on 2 cores)" >&2
  # Only what a single test node needs: LMDB metadata, no metrics or K2V.
  cargo install garage --version "$garage_version" --locked --no-default-features \
    --features bundled-libs,lmdb --root "$cache/garage-$garage_version" >&2
}

g() { "$garage" -c "$conf" "$@"; }

start() {
  build
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "s3-server: already running (pid $(cat "$dir/pid"))" >&2
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir/meta" "$dir/data"
  cat >"$conf" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
TOML
  chmod 600 "$conf"
  serve
  node=$(g node id -q 2>/dev/null | cut -d@ -f1)
  g layout assign -z dc1 -c 1G "$node" >/dev/null
  g layout apply --version 1 >/dev/null
  key_out=$(g key create cairn-test)
  key_id=$(printf '%s\n' "$key_out" | awk -F': *' '/Key ID/ {print $2; exit}')
  secret=$(printf '%s\n' "$key_out" | awk -F': *' '/Secret key/ {print $2; exit}')
  [ -n "$key_id" ] && [ -n "$secret" ] || { echo "s3-server: could not parse the key:" >&2; printf '%s\n' "$key_out" >&2; exit 1; }
  for b in cairn-store cairn-exports; do
    g bucket create "$b" >/dev/null
    g bucket allow --read --write --owner "$b" --key cairn-test >/dev/null
  done
  # A key that may read the store but not write or delete (Garage has no delete-only grant):
  # a gc with it must refuse before changing anything.
  ro_out=$(g key create cairn-readonly)
  ro_id=$(printf '%s\n' "$ro_out" | awk -F': *' '/Key ID/ {print $2; exit}')
  ro_secret=$(printf '%s\n' "$ro_out" | awk -F': *' '/Secret key/ {print $2; exit}')
  [ -n "$ro_id" ] && [ -n "$ro_secret" ] || { echo "s3-server: could not parse the read-only key" >&2; exit 1; }
  g bucket allow --read cairn-store --key cairn-readonly >/dev/null
  # ... and read the exports: the restore drill of docs/OPERATIONS.md runs with it (k8s-check).
  g bucket allow --read cairn-exports --key cairn-readonly >/dev/null
  # A key that may create buckets (S3's CreateBucket), for `cairn init` on a server without one.
  cr_out=$(g key create cairn-creator)
  cr_id=$(printf '%s\n' "$cr_out" | awk -F': *' '/Key ID/ {print $2; exit}')
  cr_secret=$(printf '%s\n' "$cr_out" | awk -F': *' '/Secret key/ {print $2; exit}')
  [ -n "$cr_id" ] && [ -n "$cr_secret" ] || { echo "s3-server: could not parse the creating key" >&2; exit 1; }
  g key allow --create-bucket cairn-creator >/dev/null
  umask 077
  cat >"$dir/env" <<ENV
export CAIRN_S3_TEST_ENDPOINT=http://127.0.0.1:$s3_port
export CAIRN_S3_TEST_REGION=garage
export CAIRN_S3_TEST_BUCKET=cairn-store
export CAIRN_S3_TEST_EXPORTS_BUCKET=cairn-exports
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export CAIRN_S3_TEST_RO_KEY_ID=$ro_id
export CAIRN_S3_TEST_RO_SECRET=$ro_secret
export CAIRN_S3_TEST_CREATE_KEY_ID=$cr_id
export CAIRN_S3_TEST_CREATE_SECRET=$cr_secret
ENV
  echo "s3-server: Garage ready on 127.0.0.1:$s3_port (pid $(cat "$dir/pid"))" >&2
}

serve() {
  nohup "$garage" -c "$conf" server >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 100); do
    g status >/dev/null 2>&1 && return
    sleep 0.2
  done
  cat "$dir/server.log" >&2; echo "s3-server: Garage did not start" >&2; exit 1
}

kill_server() {
  [ -f "$dir/pid" ] && kill -9 "$(cat "$dir/pid")" 2>/dev/null || true
  rm -f "$dir/pid"
}

resume() {
  [ -f "$conf" ] || { echo "s3-server: nothing to resume in $dir" >&2; exit 1; }
  serve
  # The API answers once the node has its layout again.
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$s3_port/" && break
    sleep 0.2
  done
  echo "s3-server: Garage resumed on 127.0.0.1:$s3_port (pid $(cat "$dir/pid"))" >&2
}

stop() {
  if [ -f "$dir/pid" ]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    sleep 0.5
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) cat "$dir/env" ;;
  build) build ;;
  kill) kill_server ;;
  resume) resume ;;
  *) echo "usage: $0 start|stop|env|build|kill|resume" >&2; exit 2 ;;
esac
