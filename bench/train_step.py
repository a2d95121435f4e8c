"""Train-step speed at the reference config: step time, tokens/s and MFU, fp32 and bf16.

Reference config (docs/performance.md): 64x64 images, patch 8 (64 image tokens, mlp connector),
ViT 4 x 256, decoder 4 x 256 with 4 heads, vocab 8192, 128 text tokens + the image per sequence,
batch 16. Batches are synthetic (the data pipeline has its own benchmark), so this measures the
compiled step alone. With `--peer=DIR` (a PyTorch peer's directory holding its own timer,
`bench_nanovlm.py`, at this config) the two are timed in turn, round by round, in one run, and the
ratio of their step times is reported; only such side-by-side ratios are comparable on a shared
machine. Usage:
`python bench/train_step.py [--dtypes=float32,bfloat16] [--steps=10] [--peer=DIR --rounds=2]`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import jax
import numpy as np
from absl import flags

from mmscale import cli_flags, host_memory
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


def reference_config(dtype: str, batch: int, remat: str, scan_layers: bool = False):
  c = base_config()
  c.model.dtype = dtype
  c.model.vit.update(image_size=64, patch_size=8, width=256, depth=4, heads=4, mlp_dim=1024)
  c.model.connector.update(name="mlp", num_tokens=64, hidden_dim=256)
  c.model.decoder.update(vocab_size=8192, width=256, depth=4, heads=4, kv_heads=4, mlp_dim=1024,
                         remat_policy=remat, scan_layers=scan_layers)
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


def compiled_step(config):
  """(run_one, params): run_one() runs one train step at `config` on a synthetic batch and
  waits for it; params is the parameter count. Called before JAX's backend is up, it first
  makes the host memory settings of the entry points (mmscale/host_memory.py)."""
  host_memory.keep_freed_memory()
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
  holder = {"state": state}

  def run_one():
    with jax.set_mesh(mesh):
      holder["state"], metrics = step(holder["state"], batch_arrays)
      return jax.block_until_ready(metrics)

  return run_one, flops_lib.param_count(boxed)


def step_seconds(run_one, steps: int, usage: list | None = None) -> float:
  """Median seconds of `steps` train steps (run_one() waits for each). `usage`: a list to which
  this process's means per step are appended as (minor page faults, CPU seconds in the kernel,
  CPU seconds in user space): a page fault is memory the kernel mapped and zero-filled afresh
  (mmscale/host_memory.py)."""
  times = []
  before = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(steps):
    start = time.perf_counter()
    run_one()
    times.append(time.perf_counter() - start)
  if usage is not None:
    after = resource.getrusage(resource.RUSAGE_SELF)
    usage.append(((after.ru_minflt - before.ru_minflt) / steps,
                  (after.ru_stime - before.ru_stime) / steps,
                  (after.ru_utime - before.ru_utime) / steps))
  return float(np.median(times))


# How the peer's process allocates host memory: as it ships (glibc's defaults), or with the
# settings mmscale makes for itself (mmscale/host_memory.py), which speed up a PyTorch step too.
PEER_MALLOC = {"system": {}, "same": host_memory.ENVIRONMENT}


def peer_key(malloc: str) -> str:
  """The prefix of a row's peer figures for a PEER_MALLOC choice ('peer' as the peer ships)."""
  return "peer" if malloc == "system" else f"peer_{malloc}_malloc"


def peer_step_seconds(peer_dir: str, python: str, dtype: str, steps: int,
                      malloc: str = "system") -> float:
  """The peer's own train-step timer at this config (its `bench_nanovlm.py`, a fresh process
  that warms up and prints one JSON line with its median `step_s`), its host memory allocated
  as `PEER_MALLOC[malloc]` says."""
  cmd = [python, "bench_nanovlm.py", "--steps", str(steps)]
  if dtype == "bfloat16":
    cmd.append("--bf16")  # torch.autocast bfloat16: its best precision on CPU
  env = {k: v for k, v in os.environ.items() if k not in host_memory.ENVIRONMENT}
  env.update(PEER_MALLOC[malloc])
  out = subprocess.run(cmd, cwd=peer_dir, capture_output=True, text=True, check=False, env=env)
  if out.returncode != 0:
    raise SystemExit(f"--peer={peer_dir}: '{' '.join(cmd)}' failed:\n{out.stderr[-2000:]}")
  return float(json.loads(out.stdout.strip().splitlines()[-1])["step_s"])


def bench(args) -> list[dict]:
  """Every dtype of `args.dtypes`: compile all, then `rounds` rounds, each timing every dtype in
  turn (mmscale's steps, then the peer's), so that the dtypes and the peer all see the same
  machine load and the VM's drift during the run falls on each of them alike; the ratios are
  taken round by round. One row per dtype."""
  compiled = {}
  for dtype in args.dtypes:
    config = reference_config(dtype, args.batch, args.remat, args.scan_layers)
    run_one, num_params = compiled_step(config)
    for _ in range(2):  # compile + warm up
      run_one()
    compiled[dtype] = (config, run_one, num_params)
  ours = {dtype: [] for dtype in args.dtypes}
  usage = {dtype: [] for dtype in args.dtypes}
  theirs = {(dtype, malloc): [] for dtype in args.dtypes for malloc in args.peer_malloc}
  for _ in range(args.rounds):
    for dtype, (_, run_one, _) in compiled.items():
      ours[dtype].append(step_seconds(run_one, args.steps, usage[dtype]))
      for malloc in args.peer_malloc if args.peer else ():
        theirs[dtype, malloc].append(peer_step_seconds(args.peer, args.peer_python, dtype,
                                                       args.steps, malloc))
  first = args.dtypes[0]
  rows = []
  for dtype, (config, _, num_params) in compiled.items():
    step_time = float(np.median(ours[dtype]))
    flops = args.batch * flops_lib.train_flops_per_sequence(config.model, config.data.seq_len, 1)
    row = {"dtype": dtype, "params": num_params, "step_time_s": step_time,
           "step_times_s": ours[dtype], "text_tokens_per_s": args.batch * TEXT_LEN / step_time,
           "positions_per_s": args.batch * config.data.seq_len / step_time,
           "tflops_per_s": flops / step_time / 1e12, "flops_per_step": flops,
           "page_faults_per_step": float(np.median([u[0] for u in usage[dtype]])),
           "kernel_cpu_s_per_step": float(np.median([u[1] for u in usage[dtype]])),
           "user_cpu_s_per_step": float(np.median([u[2] for u in usage[dtype]]))}
    if dtype != first:  # its step time over the first dtype's, round by round (< 1: faster)
      row["step_time_vs_first_dtype"] = float(np.median(
          [o / f for o, f in zip(ours[dtype], ours[first])]))
    for malloc in args.peer_malloc if args.peer else ():
      times = theirs[dtype, malloc]
      ratios = [p / o for p, o in zip(times, ours[dtype])]  # > 1: mmscale is faster
      peer = peer_key(malloc)
      row.update({f"{peer}_step_times_s": times,
                  f"{peer}_text_tokens_per_s": args.batch * TEXT_LEN / float(np.median(times)),
                  f"speedup_vs_{peer}_min": min(ratios),
                  f"speedup_vs_{peer}_median": float(np.median(ratios))})
    rows.append(row)
  return rows


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this benchmark's own (mmscale/cli_flags.py)."""
  flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes to time", flag_values=fv)
  flags.DEFINE_integer("steps", 10, "timed steps per round (the median is reported)",
                       flag_values=fv)
  flags.DEFINE_integer("rounds", 2, "rounds, each timing every dtype (mmscale, then the peer)",
                       flag_values=fv)
  flags.DEFINE_integer("batch", 16, "rows per step", flag_values=fv)
  flags.DEFINE_string("remat", "none", "decoder.remat_policy", flag_values=fv)
  flags.DEFINE_bool("scan_layers", False, "decoder.scan_layers (off: at depth 4 the scan's "
                    "stacked residual copies cost more than they save; docs/performance.md)",
                    flag_values=fv)
  flags.DEFINE_string("peer", "", "directory of a PyTorch peer with bench_nanovlm.py, timed "
                      "in turn with mmscale at the same config (empty: mmscale only)",
                      flag_values=fv)
  flags.DEFINE_string("peer_python", sys.executable, "Python with torch for the peer",
                      flag_values=fv)
  flags.DEFINE_list("peer_malloc", ["system", "same"], "the peer's host memory allocation, "
                    "each timed in every round: 'system' (glibc's defaults, as it ships) and/or "
                    "'same' (the settings mmscale makes for itself, mmscale/host_memory.py)",
                    flag_values=fv)
  flags.DEFINE_string("json", "", "also write the rows to this JSON file", flag_values=fv)


def main(argv: list[str]) -> None:
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  if args.peer and not os.path.exists(os.path.join(args.peer, "bench_nanovlm.py")):
    raise SystemExit(f"--peer: {args.peer} has no bench_nanovlm.py")
  unknown = sorted(set(args.peer_malloc) - set(PEER_MALLOC))
  if unknown or not args.peer_malloc:
    raise SystemExit(f"--peer_malloc: expected one or more of {sorted(PEER_MALLOC)}, got "
                     f"{args.peer_malloc}")
  # the MFU denominator of each dtype: on CPU its measured matmul peak (bf16: the faster of its
  # bf16 -> bf16 and bf16 -> float32 products), on an accelerator the chip's bf16 peak
  peaks = {dtype: peak.device_peak_flops(dtype) * jax.device_count() for dtype in args.dtypes}
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs); matmul peak "
        f"(MFU denominator) " + ", ".join(f"{d} {p / 1e9:.1f}" for d, p in peaks.items())
        + f" GFLOP/s; load before {os.getloadavg()[0]:.1f}")
  rows = bench(args)
  for row in rows:
    dtype = row["dtype"]
    row["mfu"] = row["tflops_per_s"] * 1e12 / peaks[dtype]
    line = (f"{dtype:<9} params {row['params'] / 1e6:.2f}M  step {row['step_time_s'] * 1e3:7.1f} ms"
            f"  text tokens/s {row['text_tokens_per_s']:7.0f}  positions/s "
            f"{row['positions_per_s']:7.0f}  {row['tflops_per_s'] * 1e3:6.1f} GFLOP/s  "
            f"MFU {100 * row['mfu']:5.1f}%  page faults/step {row['page_faults_per_step']:.0f}"
            f"  CPU s/step kernel {row['kernel_cpu_s_per_step']:.2f} user "
            f"{row['user_cpu_s_per_step']:.2f}")
    for malloc in args.peer_malloc if args.peer else ():
      peer = peer_key(malloc)
      line += (f"  | peer ({malloc} malloc) text tokens/s {row[f'{peer}_text_tokens_per_s']:7.0f}"
               f"  mmscale/peer median {row[f'speedup_vs_{peer}_median']:.2f}x "
               f"(min {row[f'speedup_vs_{peer}_min']:.2f}x)")
    if "step_time_vs_first_dtype" in row:
      line += f"  | step / {args.dtypes[0]} step, median {row['step_time_vs_first_dtype']:.2f}"
    print(line, flush=True)
  print(f"load after {os.getloadavg()[0]:.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"peak_flops": peaks, "load": os.getloadavg(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
  cli_flags.run(main)
