"""Collectives in a compiled HLO module's text, with their bytes per step.

A collective inside a `while` body (a scanned layer stack, gradient accumulation) runs once per
iteration, so each computation's collectives are multiplied by the trip counts of the loops
that reach it from the entry computation. The trip count is the loop's `known_trip_count` when
XLA states it, else the bound of its condition (`counter < N`, the form `lax.scan` lowers to).
Bytes are those of each collective's result on one device (for an all-gather the gathered
array, for a reduce-scatter the scattered shard); async pairs are counted once, at their
`-done`.
"""

from __future__ import annotations

import collections
import re

import numpy as np

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_OP = re.compile(r"\s(" + "|".join(KINDS) + r")(-start|-done)?\(")
_ARRAY = re.compile(r"\b(pred|s4|u4|s8|u8|s16|u16|s32|u32|s64|u64|f8e\w+|bf16|f16|f32|f64|c64|c128)"
                    r"\[([\d,]*)\]")
_CALLS = re.compile(r"\b(?:body|calls|to_apply|true_computation|false_computation)=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_CONDITION = re.compile(r"\bcondition=%([\w.\-]+)")
_CONSTANT = re.compile(r"s(?:32|64)\[\]\S*\s+constant\((\d+)\)")

_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2,
          "f16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8,
          "c128": 16}


def type_bytes(hlo_type: str) -> int:
  """Bytes of every array in an HLO type ('bf16[8,128]{1,0}', or a tuple of them)."""
  total = 0.0
  for dtype, dims in _ARRAY.findall(hlo_type):
    size = _BYTES.get(dtype, 1)
    total += size * (int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1)
  return int(total)


def split_computations(hlo_text: str) -> tuple[dict[str, list[str]], str]:
  """{computation name: its instruction lines}, and the entry computation's name."""
  computations, entry, current = {}, "", None
  for line in hlo_text.splitlines():
    if current is None:
      m = _HEADER.match(line)
      if m:
        current = m.group(1)
        computations[current] = []
        if line.startswith("ENTRY"):
          entry = current
    elif line.strip() == "}":
      current = None
    else:
      computations[current].append(line)
  return computations, entry


def _trip_count(line: str, computations: dict[str, list[str]]) -> int:
  m = _TRIP.search(line)
  if m:
    return int(m.group(1))
  cond = _CONDITION.search(line)
  bounds = [int(c) for l in computations.get(cond.group(1) if cond else "", [])
            for c in _CONSTANT.findall(l)]
  return max(bounds) if bounds else 1


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
  """{kind: {'count': executions per step, 'bytes': result bytes per device per step}} for the
  kinds in KINDS that occur (see the module docstring for how loops are counted)."""
  computations, entry = split_computations(hlo_text)
  out = collections.defaultdict(lambda: {"count": 0, "bytes": 0})

  def visit(name: str, times: int, depth: int) -> None:
    if depth > 64:  # HLO call graphs are acyclic; this only guards malformed text
      return
    for line in computations.get(name, ()):
      head = line.partition(" metadata=")[0]
      op = _OP.search(head)
      if op and op.group(2) != "-start" and " = " in head[:op.start()]:
        kind = op.group(1)
        out[kind]["count"] += times
        out[kind]["bytes"] += times * type_bytes(head[head.index(" = ") + 3:op.start()])
      callees = _CALLS.findall(head)
      branches = _BRANCHES.search(head)
      if branches:
        callees += [b.strip().lstrip("%") for b in branches.group(1).split(",")]
      is_while = " while(" in head
      for callee in callees:
        trips = _trip_count(line, computations) if is_while and f"body=%{callee}" in head else 1
        visit(callee, times * trips, depth + 1)

  visit(entry, 1, 0)
  return {k: dict(v) for k, v in sorted(out.items())}


_CUSTOM_CALL = re.compile(r'custom_call_target="([^"]+)"')
KERNEL_TARGETS = ("tpu_custom_call", "__cudnn$fmhaSoftmax", "__cudnn$fmhaSoftmaxBackward")


def kernel_calls(hlo_text: str) -> dict[str, int]:
  """{custom-call target: instructions} for fused kernels in the module text: Pallas/Mosaic
  kernels on TPU (`tpu_custom_call`: splash attention's forward and backward passes) and cuDNN's
  attention. Counts instructions in the text, not executions (a scanned layer's kernel is one)."""
  counts = collections.Counter(t for t in _CUSTOM_CALL.findall(hlo_text)
                               if t in KERNEL_TARGETS or t.startswith("__cudnn$fmha"))
  return dict(sorted(counts.items()))
