#!/usr/bin/env bash
# The single-machine path: set up a venv, build the knowledge world, train configs/world/tiny.py,
# evaluate, and print the results table. Rerunning resumes training and skips finished steps.
#
#   bash launch/local.sh [CONFIG] [WORKDIR] [extra --config.x=y flags...]
#
# Environment: VENV (default .venv), WORLD (default data/world), NUM_SCENES (default 20000),
# SKIP_INSTALL=1 to reuse an existing venv as is.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/world/tiny.py}
WORKDIR=${2:-runs/tiny}
shift $(( $# > 2 ? 2 : $# ))
VENV=${VENV:-.venv}
WORLD=${WORLD:-data/world}
NUM_SCENES=${NUM_SCENES:-20000}

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -c constraints.txt -e .
fi
PY="$VENV/bin/python"

if [ ! -f "$WORLD/manifest.json" ] && [ ! -f "$WORLD/world.json" ]; then
  "$PY" tools/build_world.py --out="$WORLD" --num_scenes="$NUM_SCENES" --seed=0
fi
"$PY" -m mmscale.train --config="$CONFIG" --workdir="$WORKDIR" --config.data.world_dir="$WORLD" "$@"
"$PY" -m mmscale.eval --config="$CONFIG" --workdir="$WORKDIR" --config.data.world_dir="$WORLD" "$@"
echo
echo "TensorBoard logs: $WORKDIR/tensorboard   (pip install tensorboard; tensorboard --logdir $WORKDIR/tensorboard)"
echo "Checkpoints:      $WORKDIR/checkpoints   (export: $PY tools/export.py --workdir=$WORKDIR --out=$WORKDIR/export)"
