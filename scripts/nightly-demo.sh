#!/usr/bin/env bash
# Runs the nightly job on the embedded default: a local directory store and a local state
# folder under .cairn-demo/, backing up the sample tree in testdata/sample.
# Usage: scripts/nightly-demo.sh [extra arguments for the nightly command]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --locked -p cairn
cairn="$CARGO_TARGET_DIR/debug/cairn"
export CAIRN_CONFIG=testdata/cairn.toml
"$cairn" init --exists-ok
status=0
"$cairn" run "$@" || status=$?
"$cairn" exports list
exit "$status"
