"""Time per kind of XLA op in a jax.profiler trace: the breakdown docs/performance.md quotes.

Either summarises a trace already written (the trainer's `train.profile_steps` writes one under
`W/profile`), or traces the reference train step of `bench/train_step.py` itself:

```
python bench/op_profile.py --trace=W/profile --steps=3     # a trainer's trace of 3 steps
python bench/op_profile.py --dtype=bfloat16 --steps=3      # traces the reference step
XLA_FLAGS=--xla_dump_to=/tmp/hlo --xla_dump_hlo_as_text python bench/op_profile.py \
  --dtype=bfloat16 --hlo=/tmp/hlo                          # and the time per source line
```

The XLA op events of the trace (one per op run, the events that name their `hlo_op`; on CPU
`ThunkExecutor` runs them on the intra-op threads; the runtime's own events and the input
pipeline's Python events are left out) are summed by kind, the op's name without its numeric
suffix (`ynn_fusion.12` -> `ynn_fusion`), and divided by `--steps`. An op's own multithreading is inside its one event; the
CPU executor may also run independent ops at once, and then both count, so the sum can exceed
the wall time. Matmul kinds (`ynn_`/`xnn_`/`onednn_` fusions,
plain `dot`s, cuBLAS / TPU convolution fusions) are totalled apart from the rest. Also printed:
the op runs per step, and the time within the traced span when no op runs at all (gaps between
dependent ops, the runtime's dispatch, the host's time between steps), which the summed op time
does not show.

With `--hlo` (the optimized HLO text XLA dumps, `*after_optimizations.txt`, or the dump
directory) the op time is also summed by the JAX operation each op comes from: the `op_name`
metadata of the op in that HLO (`jit(step)/transpose(jvp(MLLM))/decoder/layers_0/attn/...`),
with layer numbers dropped so that the layers add up (`layers_N` -> `layers_*`); ops without
metadata (XLA's own copies and converts) are summed under their kind.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

from absl import flags

from mmscale import cli_flags

MATMUL = re.compile(r"^(ynn_|xnn_|onednn_|dot|cublas|gemm|convolution)")
SUFFIX = re.compile(r"\.\d+$")


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("trace", "", "a *.trace.json.gz file or a directory holding one (empty: "
                      "trace the reference step)", flag_values=fv)
  flags.DEFINE_integer("steps", 3, "steps in the trace (traced here: steps to trace)",
                       flag_values=fv)
  flags.DEFINE_string("dtype", "float32", "model.dtype of the traced reference step",
                      flag_values=fv)
  flags.DEFINE_integer("top", 15, "op kinds listed", flag_values=fv)
  flags.DEFINE_string("hlo", "", "optimized HLO text of the traced program (a file or an "
                      "--xla_dump_to directory): also sum the op time by source", flag_values=fv)


def find_trace(path: str) -> str:
  """The newest *.trace.json.gz at `path` (a file, or searched for under a directory)."""
  if os.path.isfile(path):
    return path
  found = sorted(glob.glob(os.path.join(path, "**", "*.trace.json.gz"), recursive=True),
                 key=os.path.getmtime)
  if not found:
    raise SystemExit(f"--trace: no *.trace.json.gz under {path} (write one with "
                     "--config.train.profile_steps=N, docs/performance.md)")
  return found[-1]


def idle_ms(intervals: list[tuple[float, float]]) -> float:
  """Time (the intervals' unit) between the first start and the last end covered by none of the
  (start, end) intervals."""
  idle, reach = 0.0, None
  for start, end in sorted(intervals):
    if reach is not None and start > reach:
      idle += start - reach
    reach = end if reach is None else max(reach, end)
  return idle


def op_events(trace_path: str) -> list[dict]:
  """The trace's XLA op events: complete events ('X') that name their `hlo_op`."""
  with gzip.open(trace_path) as f:
    events = json.load(f)["traceEvents"]
  return [e for e in events if e.get("ph") == "X" and "hlo_op" in (e.get("args") or {})]


def summarize(trace_path: str, steps: int, events: list[dict] | None = None) -> dict:
  """{'ms_per_step': all ops, 'matmul_ms_per_step', 'kinds': {kind: ms per step},
  'ops_per_step', 'idle_ms_per_step': no op running within the traced span,
  'modules': [the XLA programs the ops belong to]} of a trace (`events`: its `op_events`, if
  already read)."""
  events = op_events(trace_path) if events is None else events
  kinds, modules, intervals = collections.Counter(), set(), []
  for event in events:
    kinds[SUFFIX.sub("", event["args"]["hlo_op"])] += event["dur"] / 1e3 / steps
    modules.add(event["args"].get("hlo_module", "?"))
    intervals.append((event["ts"], event["ts"] + event["dur"]))
  matmul = sum(ms for kind, ms in kinds.items() if MATMUL.match(kind))
  return {"trace": trace_path, "ms_per_step": sum(kinds.values()), "matmul_ms_per_step": matmul,
          "kinds": dict(kinds.most_common()), "modules": sorted(modules),
          "ops_per_step": len(intervals) / steps,
          "idle_ms_per_step": idle_ms(intervals) / 1e3 / steps}


LAYER_INDEX = re.compile(r"(layers|block)_\d+")
OP_NAME = re.compile(r'op_name="([^"]*)"')
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = ")


def find_hlo(path: str) -> str:
  """The optimized HLO text at `path` (a file, or the newest jit_step / largest
  *after_optimizations.txt under a dump directory)."""
  if os.path.isfile(path):
    return path
  found = glob.glob(os.path.join(path, "*after_optimizations.txt"))
  if not found:
    raise SystemExit(f"--hlo: no *after_optimizations.txt under {path} (dump one with "
                     "XLA_FLAGS='--xla_dump_to=DIR --xla_dump_hlo_as_text')")
  steps = [f for f in found if ".jit_step." in f]
  return max(steps or found, key=os.path.getsize)


def op_sources(hlo_text: str) -> dict[str, str]:
  """{op name: its JAX source (op_name metadata, layer numbers as `*`)} of an HLO text."""
  sources = {}
  for line in hlo_text.splitlines():
    name, source = INSTRUCTION.match(line), OP_NAME.search(line)
    if name and source:
      sources[name.group(1)] = LAYER_INDEX.sub(r"\1_*", source.group(1))
  return sources


def by_source(events: list[dict], steps: int, sources: dict[str, str]) -> dict[str, float]:
  """{source: ms per step} of a trace's `op_events`; ops without a source by their kind."""
  totals = collections.Counter()
  for event in events:
    op = event["args"]["hlo_op"]
    totals[sources.get(op, f"({SUFFIX.sub('', op)})")] += event["dur"] / 1e3 / steps
  return dict(totals.most_common())


def trace_reference_step(dtype: str, steps: int, log_dir: str) -> str:
  """Traces `steps` reference train steps (after 2 untraced ones) into log_dir."""
  import jax  # noqa: PLC0415  (only this mode needs JAX initialised)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from train_step import compiled_step, reference_config  # noqa: PLC0415
  run_one, _ = compiled_step(reference_config(dtype, 16, "none", False))
  for _ in range(2):
    run_one()
  jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
  for _ in range(steps):
    run_one()
  jax.profiler.stop_trace()
  return find_trace(log_dir)


def main(argv: list[str]) -> None:
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  if args.trace:
    path = find_trace(args.trace)
  else:
    path = trace_reference_step(args.dtype, args.steps, tempfile.mkdtemp(prefix="op_profile_"))
  events = op_events(path)
  summary = summarize(path, args.steps, events)
  total, matmul = summary["ms_per_step"], summary["matmul_ms_per_step"]
  print(f"trace: {path} (XLA programs: {', '.join(summary['modules'])})")
  print(f"op time per step, summed over ops: {total:.1f} ms; matmuls {matmul:.1f} ms "
        f"({100 * matmul / max(total, 1e-9):.0f}%), the rest {total - matmul:.1f} ms")
  print(f"op runs per step: {summary['ops_per_step']:.0f}; no op running (gaps between ops): "
        f"{summary['idle_ms_per_step']:.1f} ms per step")
  for kind, ms in list(summary["kinds"].items())[:args.top]:
    print(f"  {kind:<40} {ms:8.1f} ms")
  if args.hlo:
    hlo = find_hlo(args.hlo)
    with open(hlo) as f:
      sources = op_sources(f.read())
    print(f"by source ({hlo}):")
    for source, ms in list(by_source(events, args.steps, sources).items())[:args.top]:
      print(f"  {ms:8.1f} ms  {source}")


if __name__ == "__main__":
  cli_flags.run(main)
