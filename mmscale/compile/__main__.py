"""Compile a run's train, eval and generate steps for a TPU slice that is not there, and report
whether each fits.

  python -m mmscale.compile --config=configs/scaling/point.py:size=7b --target=v5p-256 \
      [--step=train|eval|generate|all|train,eval] [--prompt_len=P --max_new_tokens=N] \
      [--num_slices=2] [--out=report.json] [--config.optim.grad_accum_steps=4 ...]

Builds the trainer's own state and step (`--step=train`, the default), the evaluation forward
(`eval`: the loss forward of one `eval.batch_size` batch on the params alone) or generation
(`generate`: prefill of `eval.batch_size` prompts of P tokens, default `data.seq_len`, and N
decode steps with the KV cache, default the longest the eval suite generates) for the target's
topology (libtpu's topology descriptions: runs on CPU-only machines) and prints, per step,
per-device memory against the chip's HBM (fits / does not fit, headroom), parameters, analytic
FLOPs per step, projected step time and tokens/day at 40% and 55% MFU (not for generate), the
collectives of the compiled step, and, when it does not fit, the levers that would. `--out` also
writes the report as JSON (any epath, gs:// included): one report, or {step: report} when
several steps are compiled. Exit status: 0 when every step fits, 1 when one does not, 2 for bad
input.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # no TPU here: keep JAX's own arrays on the CPU

# pylint: disable=wrong-import-position
from ml_collections import config_flags

from mmscale import cli_flags, paths
from mmscale.errors import MmscaleError


def define_flags(fv, argv) -> None:
  # sys_argv: the `--config.x=y` overrides are found in the argv being parsed (not sys.argv),
  # so `main(argv)` works in-process too.
  config_flags.DEFINE_config_file("config", None, "config file, path.py[:arg]", flag_values=fv,
                                  sys_argv=list(argv))
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("target", None, "slice to compile for: v4-N, v5e-N / v5litepod-N, v5p-N, "
                      "v6e-N (N as the cloud counts it)", flag_values=fv)
  flags.DEFINE_integer("num_slices", 1, "slices joined over DCN (multi-slice)", flag_values=fv)
  flags.DEFINE_list("step", ["train"], "steps to compile: train, eval, generate (comma "
                    "separated), or all", flag_values=fv)
  flags.DEFINE_integer("prompt_len", None, "generate: prompt columns (default data.seq_len)",
                       flag_values=fv)
  flags.DEFINE_integer("max_new_tokens", None, "generate: decoded tokens (default the longest "
                       "the eval suite generates: max(eval.max_decode_len, eval.caption_max_len))",
                       flag_values=fv)
  flags.DEFINE_string("out", "", "also write the report as JSON to this path", flag_values=fv)


def main(argv) -> int:
  fv, _ = cli_flags.parse(lambda fv: define_flags(fv, argv), argv, doc=__doc__)
  for name in ("config", "target"):
    if fv[name].value is None:
      cli_flags.usage_error(f"--{name} is required")
  from mmscale.compile.report import build_report, format_report  # pylint: disable=import-outside-toplevel
  from mmscale.compile.step import STEP_ORDER, STEPS  # pylint: disable=import-outside-toplevel
  from mmscale.compile.targets import resolve_target  # pylint: disable=import-outside-toplevel
  kinds = list(STEP_ORDER) if fv.step == ["all"] else fv.step
  reports = {}
  try:
    compilers = [(kind, STEPS.get(kind)) for kind in kinds]
    target = resolve_target(fv.target, fv.num_slices)
    for kind, compile_step in compilers:
      result = compile_step(fv.config, target.devices(), prompt_len=fv.prompt_len,
                            max_new_tokens=fv.max_new_tokens)
      reports[kind] = build_report(result, target, config_name=fv["config"].config_filename)
      print(format_report(reports[kind]) + ("\n" if len(kinds) > 1 else ""), flush=True)
  except MmscaleError as e:
    cli_flags.usage_error(str(e))
  if fv.out:
    written = next(iter(reports.values())) if len(reports) == 1 else reports
    paths.write_text(fv.out, json.dumps(written, indent=2))
  return 0 if all(r["fits"] for r in reports.values()) else 1


if __name__ == "__main__":
  cli_flags.run(main)
