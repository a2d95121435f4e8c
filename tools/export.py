"""Exports a params-only checkpoint that plain Orbax can read (no mmscale import needed).

`python tools/export.py --workdir=W --out=D [--step=N] [--dtype=bfloat16]` writes
  D/params/        Orbax StandardCheckpointer tree of the model parameters (cast to --dtype)
  D/config.json    the run's config
  D/tokenizer.model
Read it back anywhere with
  `orbax.checkpoint.StandardCheckpointer().restore(os.path.abspath("D/params"))`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from mmscale import config as config_lib
from mmscale.data.batch_spec import example_batch
from mmscale.errors import MmscaleError
from mmscale.eval import params_io
from mmscale.parallel import rules as sharding_rules
from mmscale.runtime import build_runtime

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise MmscaleError(f"{path} does not exist: is {workdir} a training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def export(workdir: str, out: str, step: int | None = None, dtype: str = "float32") -> str:
  """Writes the export directory; returns the params path."""
  if dtype not in DTYPES:
    raise MmscaleError(f"--dtype={dtype}: expected one of {sorted(DTYPES)}")
  config = load_run_config(workdir)
  config.mesh.rules = tuple(tuple(rule) for rule in config.mesh.rules)
  rt = build_runtime(config)
  abstract, shardings = sharding_rules.param_shardings(
      rt.model, example_batch(config, rows=1), rt.mesh, rt.rules)
  params, step = params_io.load_params(workdir, abstract, shardings, step)
  params = jax.tree.map(lambda p: p.astype(DTYPES[dtype]), params)
  out = os.path.abspath(out)
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "params")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params, force=True)
  if jax.process_index() == 0:
    with open(os.path.join(out, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    shutil.copy(config_lib.tokenizer_path(config), os.path.join(out, "tokenizer.model"))
    with open(os.path.join(out, "export.json"), "w") as f:
      json.dump({"source_workdir": os.path.abspath(workdir), "step": step, "dtype": dtype}, f)
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--step", type=int, default=None)
  parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
  args = parser.parse_args()
  try:
    path = export(args.workdir, args.out, args.step, args.dtype)
  except MmscaleError as e:
    sys.exit(f"error: {e}")
  print(f"exported params to {path}")


if __name__ == "__main__":
  main()
