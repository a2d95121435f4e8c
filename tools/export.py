"""Exports a trained run: a params-only Orbax checkpoint, or a Hugging Face checkpoint.

`python tools/export.py --workdir=W --out=D [--step=N] [--dtype=bfloat16]` writes
  D/params/        Orbax StandardCheckpointer tree of the model parameters (cast to --dtype)
  D/config.json    the run's config
  D/tokenizer.model (or tokenizer.json + tokenizer_config.json: the run's tokenizer)
Read it back anywhere with
  `orbax.checkpoint.StandardCheckpointer().restore(os.path.abspath("D/params"))`.
W and D may be local or in a bucket (`gs://...`, any etils.epath path).

`--format=llava` writes a Hugging Face LlavaForConditionalGeneration checkpoint (config.json,
model.safetensors, preprocessor_config.json and the run's tokenizer files), `--format=text` the
decoder alone as a Llama / Qwen2 / Qwen3 *ForCausalLM (docs/pretrained.md); both float32.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import flags

from mmscale import cli_flags, paths
from mmscale.errors import MmscaleError
from mmscale.eval.loading import load_run
from mmscale.hf import export as hf_export
from mmscale.registry import Registry

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}



def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("workdir", None, "the training run", flag_values=fv)
  flags.DEFINE_string("out", None, "export directory", flag_values=fv)
  flags.DEFINE_integer("step", None, "checkpoint step (default: latest)", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", sorted(DTYPES), "dtype of the exported params",
                    flag_values=fv)
  flags.DEFINE_enum("format", "orbax", FORMATS.names(), "orbax params, or a Hugging Face "
                    "checkpoint: llava (the whole model) or text (the decoder alone)",
                    flag_values=fv)
  flags.mark_flags_as_required(["workdir", "out"], flag_values=fv)


def export(workdir: str, out: str, step: int | None = None, dtype: str = "float32") -> str:
  """Writes the export directory; returns the params path."""
  if dtype not in DTYPES:
    raise MmscaleError(f"--dtype={dtype}: expected one of {sorted(DTYPES)}")
  run, step = load_run(workdir, step=step)
  params = jax.tree.map(lambda p: p.astype(DTYPES[dtype]), run.params)
  out = paths.absolute(out)
  paths.makedirs(out)
  path = paths.join(out, "params")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(paths.path(path), params, force=True)
  if jax.process_index() == 0:
    paths.write_text(paths.join(out, "config.json"), run.config.to_json_best_effort(indent=2))
    with paths.local_dir(out) as local:  # the tokenizer libraries write local files only
      run.tokenizer.save(local)
    paths.write_text(paths.join(out, "export.json"), json.dumps(
        {"source_workdir": paths.absolute(workdir), "step": step, "dtype": dtype}))
  return path


def _special_ids(tokenizer) -> dict:
  return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
          "pad_token_id": tokenizer.pad_id}


def export_hf(workdir: str, out: str, step: int | None = None, kind: str = "llava") -> str:
  """A Hugging Face checkpoint of the run (kind 'llava' or 'text') in `out`; returns `out`."""
  run, _ = load_run(workdir, step=step)
  out = paths.absolute(out)
  special = _special_ids(run.tokenizer)
  if kind == "llava":
    hf_export.export_llava(run.config.model, run.params, out, run.tokenizer.image_id, special,
                           image_token=run.tokenizer.id_to_piece(run.tokenizer.image_id))
  else:
    hf_export.export_text(run.config.model, run.params, out, special)
  if jax.process_index() == 0:
    with paths.local_dir(out) as local:
      run.tokenizer.save(local)
  return out


FORMATS = Registry("export format")
FORMATS.add("orbax", lambda fv: export(fv.workdir, fv.out, fv.step, fv.dtype))
FORMATS.add("llava", lambda fv: export_hf(fv.workdir, fv.out, fv.step, "llava"))
FORMATS.add("text", lambda fv: export_hf(fv.workdir, fv.out, fv.step, "text"))


def main(argv: list[str]) -> None:
  fv, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  try:
    path = FORMATS.get(fv.format)(fv)
  except MmscaleError as e:
    sys.exit(f"error: {e}")
  print(f"exported params to {path}")


if __name__ == "__main__":
  cli_flags.run(main)
