#!/usr/bin/env bash
# Asks a resolver whether mmscale with every extra installs from wheels, under constraints.txt, on
# each platform it promises (docs/install.md): Linux x86-64 and aarch64, macOS arm64, Python
# 3.11 and 3.12. Nothing is installed. Needs the package index and uv (in the `test` extra).
#
#   bash .ci/check_platforms.sh [PYTHON]
#
# uv's `pip compile --python-platform` evaluates environment markers for the target platform
# (pip's `--platform` evaluates them on the running machine, so the `tf` extra's marker-chosen
# package would be wrong). Only-binary except `promise` (a pure-Python dependency of
# tensorflow-datasets published only as a source archive).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip wheel -q --no-deps -w "$tmp/wheel" . >/dev/null
echo "mmscale[all] @ file://$(ls "$tmp"/wheel/mmscale-*.whl)" > "$tmp/requirements.in"

status=0
for platform in x86_64-manylinux_2_28 aarch64-manylinux_2_28 aarch64-apple-darwin; do
  for python in 3.11 3.12; do
    if "$PY" -m uv pip compile -q --python-version "$python" --python-platform "$platform" \
        --only-binary :all: --no-binary promise -c constraints.txt "$tmp/requirements.in" \
        -o "$tmp/resolved.txt" > "$tmp/log" 2>&1; then
      echo "ok    $platform python $python ($(grep -c '==' "$tmp/resolved.txt") packages," \
           "$(grep -E '^(tensorflow|tensorflow-cpu)==' "$tmp/resolved.txt"))"
    else
      echo "FAIL  $platform python $python:"; sed 's/^/      /' "$tmp/log"
      status=1
    fi
  done
done
exit $status
