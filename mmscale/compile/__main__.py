"""Compile a run's train step for a TPU slice that is not there, and report whether it fits.

  python -m mmscale.compile --config=configs/scaling/point.py:size=7b --target=v5p-256 \
      [--num_slices=2] [--out=report.json] [--config.optim.grad_accum_steps=4 ...]

Builds the trainer's own state and step for the target's topology (libtpu's topology
descriptions: runs on CPU-only machines) and prints per-device memory against the chip's HBM
(fits / does not fit, headroom), parameters, analytic FLOPs per step, projected step time and
tokens/day at 40% and 55% MFU, the collectives of the compiled step, and, when it does not fit,
the levers that would. `--out` also writes the report as JSON (any epath, gs:// included).
Exit status: 0 when it fits, 1 when it does not, 2 for bad input.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # no TPU here: keep JAX's own arrays on the CPU

# pylint: disable=wrong-import-position
from etils import epath
from ml_collections import config_flags

from mmscale import cli_flags
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
  flags.DEFINE_string("out", "", "also write the report as JSON to this path", flag_values=fv)


def main(argv) -> int:
  fv, _ = cli_flags.parse(lambda fv: define_flags(fv, argv), argv, doc=__doc__)
  for name in ("config", "target"):
    if fv[name].value is None:
      cli_flags.usage_error(f"--{name} is required")
  from mmscale.compile.report import build_report, format_report  # pylint: disable=import-outside-toplevel
  from mmscale.compile.step import compile_train_step  # pylint: disable=import-outside-toplevel
  from mmscale.compile.targets import resolve_target  # pylint: disable=import-outside-toplevel
  try:
    target = resolve_target(fv.target, fv.num_slices)
    result = compile_train_step(fv.config, target.devices())
  except MmscaleError as e:
    cli_flags.usage_error(str(e))
  report = build_report(result, target, config_name=fv["config"].config_filename)
  print(format_report(report))
  if fv.out:
    path = epath.Path(fv.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
  return 0 if report["fits"] else 1


if __name__ == "__main__":
  cli_flags.run(main)
