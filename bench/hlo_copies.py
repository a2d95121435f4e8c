"""Layout copies in an optimized XLA HLO dump: how many, and how many bytes they write per call.

A copy or transpose scheduled as an op of its own (in the entry computation, a loop body or a
conditional branch; not inside a fusion that also computes something) only moves data into
another layout. Counted from `*after_optimizations.txt` of `XLA_FLAGS=--xla_dump_to=DIR`; the
bytes are each op's output size, once per op (a conditional's branches all count, so for the
train step's fused loss every capacity branch is included). Usage:
`python bench/hlo_copies.py --hlo=DIR/module_NNNN.jit_step.cpu_after_optimizations.txt`;
prints one JSON line.
"""

from __future__ import annotations

import json
import math
import re

from absl import flags

from mmscale import cli_flags

BYTES = {"f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s8": 1, "u8": 1, "pred": 1,
         "f64": 8, "s64": 8}
COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) ")
COPY_OP = re.compile(r"^\s*(?:ROOT )?%([\w.\-]*(?:copy|transpose)[\w.\-]*) = (\w+)\[([\d,]*)\]"
                     r"(?:\{[^}]*\})? (fusion|copy|transpose)\(")
NESTED = ("fused_computation", "wrapped_", "ynn_", "xnn_", "onednn_", "parallel_")


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("hlo", None, "an *after_optimizations.txt file of an XLA dump",
                      flag_values=fv)
  flags.mark_flag_as_required("hlo", flag_values=fv)


def count_copies(text: str) -> tuple[int, int]:
  """(ops, bytes written) of the top-level layout copies in one HLO module's text."""
  ops = written = 0
  nested = False
  for line in text.splitlines():
    if line and not line[0].isspace():  # a computation's header (or the module's)
      match = COMPUTATION.match(line)
      nested = bool(match) and match.group(1).startswith(NESTED)
      continue
    match = COPY_OP.match(line)
    if nested or not match:
      continue
    _, dtype, dims, _ = match.groups()
    ops += 1
    written += BYTES.get(dtype, 4) * math.prod(int(d) for d in dims.split(",") if d)
  return ops, written


def main(argv: list[str]) -> None:
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  with open(args.hlo) as f:
    ops, written = count_copies(f.read())
  print(json.dumps({"hlo": args.hlo, "copy_ops": ops, "mb_written": round(written / 1e6, 1)}))


if __name__ == "__main__":
  cli_flags.run(main)
