"""The compile report: memory against the chip's HBM, FLOPs, projected speed, collectives, and
the levers that would make a step fit (docs/pod_scale.md).

FLOPs are mmscale's analytic count (`mmscale.models.flops`), not XLA's `cost_analysis()`, which
counts a scanned layer stack's body once. Projected step time = FLOPs per step / (devices x
chip peak x MFU), at the stated MFUs.
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


def build_report(result: CompiledStep, target: Target, config_name: str = "") -> dict:
  """A JSON-able dict of everything the tool prints."""
  cfg, spec = result.spec.config, result.spec
  hbm = target.chip.hbm_bytes
  memory = dict(result.memory)
  if result.oom_message is not None:  # the compiler stopped: arguments are the state + batch
    memory.setdefault("arguments", result.state_bytes + result.batch_bytes)
    if "temporaries" in memory:
      memory.setdefault("total", memory["arguments"] + memory["temporaries"])
  total = memory.get("total")
  fits = result.oom_message is None and total is not None and total <= hbm
  rows, seq_len = int(cfg.data.batch_size), spec.layout.seq_len
  flops = rows * flops_lib.train_flops_per_sequence(cfg.model, seq_len, spec.layout.max_images)
  peak = target.chip.peak_bf16_flops
  projections = []
  for mfu in MFUS:
    seconds = flops / (target.num_devices * peak * mfu)
    projections.append({"mfu": mfu, "step_seconds": seconds,
                        "tokens_per_day": rows * seq_len * SECONDS_PER_DAY / seconds})
  report = {
      "config": config_name, "target": target.name, "topology": target.topology,
      "num_slices": target.num_slices, "devices": target.num_devices, "chip": target.chip.name,
      "hbm_bytes": hbm, "mesh": result.mesh_shape, "global_batch": rows, "seq_len": seq_len,
      "grad_accum_steps": int(cfg.optim.grad_accum_steps),
      "remat_policy": str(cfg.model.decoder.remat_policy), "dtype": str(cfg.model.dtype),
      "params": result.num_params,
      "memory": memory, "state_bytes": result.state_bytes, "fits": fits,
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
  report["levers"] = [] if fits and report["headroom"] >= HEADROOM else levers(result, report)
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
  d = cfg.model.decoder
  rows_per_device = report["global_batch"] / max(1, cfg.optim.grad_accum_steps) \
      / result.spec.batch_shards
  heads = d.heads / max(1, shape["tensor"])
  scores = rows_per_device * heads * report["seq_len"] ** 2 * 4
  if report["attention"] == "xla":
    out.append({"lever": "--config.model.attention=auto", "estimated_total_bytes": None,
                "fits": None, "note": f"the XLA attention materialises float32 scores of "
                                      f"{scores / GIB:.2f} GiB per layer per device; the "
                                      f"splash kernel does not"})
  return out


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
  lines = [
      f"target {report['target']} ({report['num_slices']} x {report['topology']}, "
      f"{report['devices']} {report['chip']} chips, {_gib(report['hbm_bytes'])} HBM each); "
      f"mesh {report['mesh']}",
      f"model: {report['params']:,} parameters; global batch {report['global_batch']} x "
      f"{report['seq_len']} tokens, grad_accum_steps {report['grad_accum_steps']}, remat "
      f"{report['remat_policy']}, dtype {report['dtype']}",
      f"memory per device: arguments {_gib(m.get('arguments'))}, outputs "
      f"{_gib(m.get('outputs'))}, temporaries {_gib(m.get('temporaries'))}, aliased "
      f"{_gib(m.get('aliased'))}; total {_gib(m.get('total'))} of {_gib(report['hbm_bytes'])}",
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
