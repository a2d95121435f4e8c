#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create or reuse it, copy this checkout to every worker, install
# jax[tpu] + mmscale, run `python -m mmscale.train` on all workers, stream worker 0's log, and
# keep / stop / delete the slice. All the logic lives in mmscale/launch/tpu.py (tested there).
#
#   bash launch/tpu_pod.sh --name=mm-v5e --zone=us-west4-a --accelerator_type=v5litepod-16 \
#     --config=configs/world/tiny.py --workdir=gs://BUCKET/runs/tiny [--after=delete] \
#     [--num_slices=2] [--dry_run] -- [--config.x=y ...]
#
# PYTHON (default python3) must have mmscale importable (pip install -e .). docs/launch.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m mmscale.launch.tpu "$@"
