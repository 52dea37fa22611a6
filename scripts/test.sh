#!/usr/bin/env bash
# The one test command: formatting, lints, then every test of every crate.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== engine module layers"
python3 scripts/module-cycles.py
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== S3 test server (Garage)"
scripts/s3-server.sh start
trap 'scripts/s3-server.sh stop' EXIT
eval "$(scripts/s3-server.sh env)"

echo "== cargo test"
# insta must compare against the committed snapshots, never write new ones.
INSTA_UPDATE=no cargo test --workspace --locked "$@" 2>&1 | tee "${TMPDIR:-/tmp}/cairn-test.log"
echo "== deployment checks (k8s/: kubenix, kubernetes-validate, secrets, promtool, hadolint, the CronJob's command, the restore drill)"
python3 scripts/k8s-check.py "$CARGO_TARGET_DIR/debug/cairn"
echo "== the image built and every CronJob's pod run in podman (scripts/pod-check.py)"
python3 scripts/pod-check.py "$CARGO_TARGET_DIR/debug/cairn"
# One closing line for CI: the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "${TMPDIR:-/tmp}/cairn-test.log"
