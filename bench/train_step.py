"""Train-step speed at the reference config: step time, tokens/s and MFU, fp32 and bf16.

Reference config (docs/performance.md): 64x64 images, patch 8 (64 image tokens, mlp connector),
ViT 4 x 256, decoder 4 x 256 with 4 heads, vocab 8192, 128 text tokens + the image per sequence,
batch 16. Batches are synthetic (the data pipeline has its own benchmark), so this measures the
compiled step alone. Usage: `python bench/train_step.py [--dtypes=float32,bfloat16] [--steps=10]`.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import flags

from mmscale import cli_flags
from mmscale.config import base_config
from mmscale.data.batch import empty_rows, one_per_row
from mmscale.models import flops as flops_lib
from mmscale.models.registry import build_model
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules
from mmscale.spec import validate
from mmscale.train import optim, peak
from mmscale.train.state import create_sharded_state
from mmscale.train.step import make_train_step

TEXT_LEN = 128
# A popular PyTorch VLM trainer at this config on this machine kind (2 CPU cores), text tokens/s.
PYTORCH_REFERENCE = {"float32": 1900.0, "bfloat16": 3200.0}


def reference_config(dtype: str, batch: int, remat: str):
  c = base_config()
  c.model.dtype = dtype
  c.model.vit.update(image_size=64, patch_size=8, width=256, depth=4, heads=4, mlp_dim=1024)
  c.model.connector.update(name="mlp", num_tokens=64, hidden_dim=256)
  c.model.decoder.update(vocab_size=8192, width=256, depth=4, heads=4, kv_heads=4, mlp_dim=1024,
                         remat_policy=remat)
  c.data.seq_len = TEXT_LEN + 64
  c.data.max_images_per_seq = 1
  c.data.batch_size = batch
  c.mesh.shape = {"data": -1, "fsdp": 1, "tensor": 1, "expert": 1}
  return c


def synthetic_batch(spec, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """[bos, 64 image tokens, 127 text tokens] per row; loss on the text."""
  rng = np.random.default_rng(seed)
  layout, rows = spec.layout, spec.config.data.batch_size
  t, k, size = layout.seq_len, layout.tokens_per_image, layout.image_size
  mask_ar = np.ones((t,), np.int32)
  mask_ar[2:1 + k] = 0
  mask_loss = np.ones((t,), np.int32)
  mask_loss[:1 + k] = 0
  examples = [{"tokens": rng.integers(4, vocab_size, (t,)).astype(np.int32), "mask_ar": mask_ar,
               "mask_loss": mask_loss,
               "images": rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32),
               "image_positions": np.arange(1, 1 + k, dtype=np.int32)} for _ in range(rows)]
  return one_per_row(examples, layout)


def bench(dtype: str, steps: int, batch: int, remat: str) -> dict:
  config = reference_config(dtype, batch, remat)
  spec = validate(config, jax.device_count())
  mesh, rules = mesh_lib.make_mesh(spec.mesh_shape), spec.rules
  model = build_model(config.model)
  tx, schedule = optim.make_optimizer(config.optim, 1000, 1)
  example = empty_rows(spec.layout, 1)
  boxed = sharding_rules.abstract_params(model, example, mesh, rules)
  state, shardings = create_sharded_state(model, tx, boxed, example, mesh, rules,
                                          jax.random.key(0))
  step = make_train_step(model, tx, schedule, config, mesh, rules, shardings)
  batch_arrays = sharding_rules.global_batch(
      synthetic_batch(spec, config.model.decoder.vocab_size), mesh, rules)
  with jax.set_mesh(mesh):
    for _ in range(2):  # compile + warm up
      state, metrics = step(state, batch_arrays)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      state, metrics = step(state, batch_arrays)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
  step_time = float(np.median(times))
  flops = batch * flops_lib.train_flops_per_sequence(config.model, config.data.seq_len, 1)
  return {"dtype": dtype, "params": flops_lib.param_count(boxed), "step_time_s": step_time,
          "text_tokens_per_s": batch * TEXT_LEN / step_time,
          "positions_per_s": batch * config.data.seq_len / step_time,
          "tflops_per_s": flops / step_time / 1e12, "flops_per_step": flops}


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this benchmark's own (mmscale/cli_flags.py)."""
  flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes to time", flag_values=fv)
  flags.DEFINE_integer("steps", 10, "timed steps per dtype (the median is reported)",
                       flag_values=fv)
  flags.DEFINE_integer("batch", 16, "rows per step", flag_values=fv)
  flags.DEFINE_string("remat", "none", "decoder.remat_policy", flag_values=fv)
  flags.DEFINE_string("json", "", "also write the rows to this JSON file", flag_values=fv)


def main(argv: list[str]) -> None:
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  fp32_peak = peak.device_peak_flops("float32") * jax.device_count()
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}; measured fp32 matmul "
        f"peak {fp32_peak / 1e9:.1f} GFLOP/s (MFU denominator, all dtypes)")
  rows = []
  for dtype in args.dtypes:
    row = bench(dtype, args.steps, args.batch, args.remat)
    row["mfu"] = row["tflops_per_s"] * 1e12 / fp32_peak
    row["pytorch_reference_text_tokens_per_s"] = PYTORCH_REFERENCE.get(dtype)
    rows.append(row)
    print(f"{dtype:<9} params {row['params'] / 1e6:.2f}M  step {row['step_time_s'] * 1e3:7.1f} ms  "
          f"text tokens/s {row['text_tokens_per_s']:7.0f} (PyTorch ref {row['pytorch_reference_text_tokens_per_s']:.0f})  "
          f"positions/s {row['positions_per_s']:7.0f}  {row['tflops_per_s'] * 1e3:6.1f} GFLOP/s  "
          f"MFU {100 * row['mfu']:5.1f}%")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"fp32_peak": fp32_peak, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  cli_flags.run(main)
