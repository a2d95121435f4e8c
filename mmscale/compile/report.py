"""The compile report: memory against the chip's HBM, FLOPs, projected speed, collectives, and
the levers that would make a step fit (docs/pod_scale.md).

FLOPs are mmscale's analytic count (`mmscale.models.flops`), not XLA's `cost_analysis()`, which
counts a scanned layer stack's body once: training 6 x forward MACs per sequence, evaluation
2 x, generation 2 x the forward MACs of prompt + generated tokens (the KV cache computes each
position once). Projected step time = FLOPs per step / (devices x chip peak x MFU), at the
stated MFUs, for training and evaluation; generation's decode steps are bound by memory
bandwidth (every step reads the params and the cache for one token per row), so no MFU
projection is made for it.
"""

from __future__ import annotations

from mmscale.compile import hlo as hlo_lib
from mmscale.compile.step import CompiledStep
from mmscale.compile.targets import Target
from mmscale.models import flops as flops_lib
from mmscale.models.attention import resolve_kernel

MFUS = (0.40, 0.55)
HEADROOM = 0.10  # what a preset must leave free (allocator fragmentation, runtime buffers)
GIB = float(1 << 30)
SECONDS_PER_DAY = 86400.0


def forward_flops_per_sequence(model_config, seq_len: int, num_images: int) -> float:
  """Forward FLOPs (2 x MACs) of one sequence of seq_len tokens holding num_images images."""
  per_image = (flops_lib.vit_macs_per_image(model_config)
               + flops_lib.connector_macs_per_image(model_config))
  return 2.0 * float(flops_lib.decoder_macs_per_sequence(model_config, seq_len)
                     + num_images * per_image)


def step_flops(result: CompiledStep) -> float:
  """Analytic FLOPs of one step of `result.kind` (module docstring)."""
  cfg, layout = result.spec.config, result.spec.layout
  if result.kind == "train":
    return result.rows * flops_lib.train_flops_per_sequence(cfg.model, result.seq_len,
                                                            layout.max_images)
  return result.rows * forward_flops_per_sequence(
      cfg.model, result.seq_len + result.new_tokens, layout.max_images)


def needed_bytes(kind: str, memory: dict):
  """The per-device bytes a step's verdict is taken on: the train step's `total` (arguments +
  outputs + temporaries - aliased); for eval and generate the larger of that and XLA's `peak`
  estimate, since the temporaries of a compiled generate step leave out the KV cache its decode
  loop carries, which only the peak counts (docs/pod_scale.md)."""
  total = memory.get("total")
  if kind == "train" or total is None or not memory.get("peak"):
    return total
  return max(total, memory["peak"])


def build_report(result: CompiledStep, target: Target, config_name: str = "") -> dict:
  """A JSON-able dict of everything the tool prints."""
  cfg = result.spec.config
  hbm = target.chip.hbm_bytes
  memory = dict(result.memory)
  if result.oom_message is not None:  # the compiler stopped: arguments are the state + batch
    memory.setdefault("arguments", result.state_bytes + result.batch_bytes)
    if "temporaries" in memory:
      memory.setdefault("total", memory["arguments"] + memory["temporaries"])
  total = needed_bytes(result.kind, memory)
  fits = result.oom_message is None and total is not None and total <= hbm
  rows, seq_len = result.rows, result.seq_len
  flops = step_flops(result)
  peak = target.chip.peak_bf16_flops
  projections = []
  for mfu in MFUS if result.kind != "generate" else ():
    seconds = flops / (target.num_devices * peak * mfu)
    projections.append({"mfu": mfu, "step_seconds": seconds,
                        "tokens_per_day": rows * seq_len * SECONDS_PER_DAY / seconds})
  report = {
      "step": result.kind, "new_tokens": result.new_tokens,
      "config": config_name, "target": target.name, "topology": target.topology,
      "num_slices": target.num_slices, "devices": target.num_devices, "chip": target.chip.name,
      "hbm_bytes": hbm, "mesh": result.mesh_shape, "global_batch": rows, "seq_len": seq_len,
      "grad_accum_steps": int(cfg.optim.grad_accum_steps),
      "remat_policy": str(cfg.model.decoder.remat_policy), "dtype": str(cfg.model.dtype),
      "params": result.num_params,
      "memory": memory, "needed_bytes": total, "state_bytes": result.state_bytes, "fits": fits,
      "headroom": None if total is None else 1.0 - total / hbm,
      "oom_message": result.oom_message,
      "flops_per_step": flops, "flops_per_device": flops / target.num_devices,
      "peak_flops_per_device": peak, "projections": projections,
      "collectives": hlo_lib.collectives(result.hlo) if result.hlo else {},
      "attention": resolve_kernel(str(cfg.model.attention), target.chip.platform,
                                  str(cfg.model.dtype)),
      "kernel_calls": hlo_lib.kernel_calls(result.hlo) if result.hlo else {},
      "replicated": [{"path": p, "shape": list(s), "bytes": b} for p, s, b in result.replicated],
  }
  if fits and report["headroom"] >= HEADROOM:
    report["levers"] = []
  else:
    report["levers"] = (levers if result.kind == "train" else inference_levers)(result, report)
  return report


def _accum_options(rows: int, accum: int, batch_shards: int) -> list[int]:
  return [a for a in (2, 4, 8, 16, 32, 64) if a > accum and rows % a == 0
          and (rows // a) % batch_shards == 0]


def levers(result: CompiledStep, report: dict) -> list[dict]:
  """What would make the step fit, each with an estimate of the per-device total where it can
  be computed from this compile.

  The estimates split the compile's bytes into the train state (exact, from its shardings),
  gradients (f32, sharded as the params: about `param_bytes`) and activations (the rest of the
  temporaries), then scale the part a lever changes: gradient accumulation divides the
  activations, more fsdp divides the state.
  """
  cfg = result.spec.config
  hbm, memory = report["hbm_bytes"], report["memory"]
  temporaries = memory.get("temporaries")
  fixed = memory.get("total", 0) - (temporaries or 0)  # arguments + outputs - aliased
  budget = hbm * (1 - HEADROOM)
  out = []
  if temporaries is not None:
    accum = int(cfg.optim.grad_accum_steps)
    grads = result.param_bytes * (2 if accum > 1 else 1)  # + the accumulator
    activations = max(0, temporaries - grads)
    for new in _accum_options(report["global_batch"], accum, result.spec.batch_shards):
      grads_new = result.param_bytes * 2
      estimate = fixed + grads_new + activations * accum / new
      out.append({"lever": f"--config.optim.grad_accum_steps={new}",
                  "estimated_total_bytes": int(estimate), "fits": estimate <= budget})
      if estimate <= budget:
        break
  shape = result.mesh_shape
  if shape["data"] > 1 and temporaries is not None:
    fsdp_new = shape["fsdp"] * shape["data"]
    estimate = (memory["total"] - result.state_bytes
                + result.state_bytes * shape["fsdp"] / fsdp_new)
    out.append({"lever": f"--config.mesh.shape.fsdp={fsdp_new} --config.mesh.shape.data=1",
                "estimated_total_bytes": int(estimate), "fits": estimate <= budget})
  if str(cfg.model.decoder.remat_policy) != "full":
    out.append({"lever": "--config.model.decoder.remat_policy=full",
                "estimated_total_bytes": None, "fits": None,
                "note": "recomputes each layer in the backward pass; the saving needs a compile"})
  return out + _scores_lever(result, report,
                             report["global_batch"] / max(1, cfg.optim.grad_accum_steps))


def _scores_lever(result: CompiledStep, report: dict, rows: float) -> list[dict]:
  """The attention kernel lever when the step uses the XLA attention: the float32 T x T scores
  it materialises per layer, which the splash kernel does not."""
  if report["attention"] != "xla":
    return []
  d, shape = result.spec.config.model.decoder, result.mesh_shape
  heads = d.heads / max(1, shape["tensor"])
  length = result.seq_len + result.new_tokens
  scores = rows / result.spec.batch_shards * heads * length ** 2 * 4
  return [{"lever": "--config.model.attention=auto", "estimated_total_bytes": None,
           "fits": None, "note": f"the XLA attention materialises float32 scores of "
                                 f"{scores / GIB:.2f} GiB per layer per device; the "
                                 f"splash kernel does not"}]


def inference_levers(result: CompiledStep, report: dict) -> list[dict]:
  """What would make an eval or generate step fit: fewer rows per batch (`eval.batch_size`:
  everything but the params, the batch, activations and the KV cache, scales with the rows;
  estimate: params + (needed - params) x new / old rows), and kernel attention."""
  memory, budget = report["memory"], report["hbm_bytes"] * (1 - HEADROOM)
  needed = report["needed_bytes"]
  out = []
  if needed is not None and memory.get("arguments") is not None:
    fixed = min(needed, result.param_bytes)  # the params; the rest scales with the rows
    rows = result.rows
    while rows // 2 >= result.spec.batch_shards and rows % 2 == 0:
      rows //= 2
      estimate = fixed + (needed - fixed) * rows / result.rows
      out.append({"lever": f"--config.eval.batch_size={rows}",
                  "estimated_total_bytes": int(estimate), "fits": estimate <= budget})
      if estimate <= budget:
        break
  return out + _scores_lever(result, report, result.rows)


def _gib(nbytes) -> str:
  """Bytes in the largest binary unit that keeps the number >= 1 ('13.85 GiB', '812.0 KiB')."""
  if nbytes is None:
    return "?"
  for unit, size in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
    if abs(nbytes) >= size:
      return f"{nbytes / size:.2f} {unit}"
  return f"{int(nbytes)} B"


def format_report(report: dict) -> str:
  """The human-readable summary the command prints."""
  m = report["memory"]
  step = report.get("step", "train")
  if step == "train":
    shape = (f"global batch {report['global_batch']} x {report['seq_len']} tokens, "
             f"grad_accum_steps {report['grad_accum_steps']}, remat {report['remat_policy']}")
  elif step == "eval":
    shape = (f"eval batch {report['global_batch']} x {report['seq_len']} tokens "
             "(loss forward, params only)")
  else:
    shape = (f"{report['global_batch']} prompts of {report['seq_len']} tokens + "
             f"{report['new_tokens']} generated (prefill + decode with KV cache, params only)")
  lines = [
      f"{step} step for target {report['target']} ({report['num_slices']} x "
      f"{report['topology']}, {report['devices']} {report['chip']} chips, "
      f"{_gib(report['hbm_bytes'])} HBM each); mesh {report['mesh']}",
      f"model: {report['params']:,} parameters; {shape}, dtype {report['dtype']}",
      f"memory per device: arguments {_gib(m.get('arguments'))}, outputs "
      f"{_gib(m.get('outputs'))}, temporaries {_gib(m.get('temporaries'))}, aliased "
      f"{_gib(m.get('aliased'))}; total {_gib(m.get('total'))} of {_gib(report['hbm_bytes'])}"
      + (f" (XLA peak estimate {_gib(m['peak'])}"
         + ("; the verdict uses the larger" if step != "train" else "") + ")"
         if m.get("peak") else ""),
  ]
  if report["fits"]:
    lines.append(f"FITS: headroom {report['headroom']:.1%}"
                 + ("" if report["headroom"] >= HEADROOM else
                    f" (below the {HEADROOM:.0%} a run should keep free)"))
  else:
    lines.append("DOES NOT FIT: " + (report["oom_message"] or
                                     f"total exceeds the chip's {_gib(report['hbm_bytes'])}"))
  lines.append(f"FLOPs per step (analytic): {report['flops_per_step']:.3e} "
               f"({report['flops_per_device']:.3e} per device; peak "
               f"{report['peak_flops_per_device']:.3e} FLOP/s bf16 per chip)")
  for p in report["projections"]:
    lines.append(f"  at {p['mfu']:.0%} MFU: {p['step_seconds']:.4g} s/step, "
                 f"{p['tokens_per_day']:.3e} tokens/day")
  if step == "generate":
    lines.append("  (no MFU projection: decode steps are bound by memory bandwidth)")
  calls = ", ".join(f"{t} x{n}" for t, n in report["kernel_calls"].items()) or "none"
  lines.append(f"attention: {report['attention']} (fused kernels in the compiled step: {calls})")
  if report["collectives"]:
    lines.append("collectives per step (result bytes per device): " + ", ".join(
        f"{k} x{v['count']} {_gib(v['bytes'])}" for k, v in report["collectives"].items()))
  for r in report["replicated"]:
    lines.append(f"replicated on every device: {r['path']} {tuple(r['shape'])} {_gib(r['bytes'])}")
  if report["levers"]:
    lines.append("levers:")
    for lever in report["levers"]:
      est = lever.get("estimated_total_bytes")
      tail = (f"est. {_gib(est)} per device ({'fits' if lever['fits'] else 'still over'} "
              f"with {HEADROOM:.0%} headroom)") if est is not None else lever.get("note", "")
      lines.append(f"  {lever['lever']}: {tail}")
  return "\n".join(lines)
