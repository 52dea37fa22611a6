#!/usr/bin/env bash
# The one test command: formatting, lints, then every test of every crate.
# Usage: scripts/test.sh [extra cargo test args] [-- extra test binary args]
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
# Tests that need what this script provides (the S3 test server above, a Pushgateway and pyzstd
# from scripts/setup.sh, root as in CI) are #[ignore]d, so that a plain `cargo test` reports them
# as ignored; --include-ignored runs them here, and a missing prerequisite fails them. Arguments
# before a `--` go to cargo test, the rest to the test binaries after --include-ignored.
cargo_args=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  cargo_args+=("$1")
  shift
done
if [ $# -gt 0 ]; then shift; fi
# insta must compare against the committed snapshots, never write new ones.
INSTA_UPDATE=no cargo test --workspace --locked ${cargo_args[@]+"${cargo_args[@]}"} -- --include-ignored "$@" 2>&1 \
  | tee "${TMPDIR:-/tmp}/cairn-test.log"
echo "== deployment checks (k8s/: kubenix, kubernetes-validate, secrets, promtool, hadolint, the CronJob's command, the restore drill)"
python3 scripts/k8s-check.py "$CARGO_TARGET_DIR/debug/cairn"
echo "== the image built and every CronJob's pod run in podman (scripts/pod-check.py)"
python3 scripts/pod-check.py "$CARGO_TARGET_DIR/debug/cairn"
# One closing line for CI: the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "${TMPDIR:-/tmp}/cairn-test.log"
