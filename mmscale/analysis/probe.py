"""The modality-balance probe on a run's VQA eval: calibration, erasure evaluations, TCCD sweep.

- Calibration: hidden states of full examples (prompt + answer) of training-arm records (default
  the world's `vqa` arm: held-out eval questions never shape the centroids), K-means per
  modality and layer (`centroids.fit_centroids`).
- Erasure: exact-match VQA per question type with no erasure, text erased, image erased (all
  chosen layers at once); drop = baseline accuracy - erased accuracy (positive = worse), and
  ratio = text drop / image drop (the paper reports ~4 on 7 pretrained MLLMs).
- TCCD: the same evaluation decoded with `decoding.tccd_generate` for each alpha.
"""

from __future__ import annotations

import collections
import itertools
import math
import os


from mmscale.analysis import centroids as centroids_lib
from mmscale.analysis import decoding, hidden
from mmscale.data import records
from mmscale.data.transforms import ExampleBuilder, builder_for
from mmscale.eval import generate
from mmscale.eval.vqa import normalize_answer
from mmscale.data.batch import batches_of, one_per_row
from mmscale.runtime import Run
from mmscale.eval.records import load_eval_records


def _builder(ctx: Run) -> ExampleBuilder:
  return builder_for(ctx.config.data, ctx.layout, ctx.tokenizer)


def _batches(ctx: Run, examples: list[dict]):
  """(global left-padded batch, n_real) over `examples`, one padded length for the whole set."""
  length = max(len(e["tokens"]) for e in examples)
  for chunk, n_real in batches_of(examples, ctx.rows_per_batch()):
    batch = one_per_row(chunk, ctx.layout, length=length, pad="left")
    yield ctx.to_global(batch), n_real


def calibration_examples(ctx: Run, arms=("vqa",), per_arm: int = 2000) -> list[dict]:
  """Full examples (with answers/targets) of the first `per_arm` records of each world arm."""
  build = _builder(ctx)
  out = []
  for arm in arms:
    directory = os.path.join(ctx.config.data.world_dir, "arms", arm)
    for rec in itertools.islice(records.iter_records(directory), per_arm):
      out.append(build(rec))
  return out


def fit_probe_centroids(ctx: Run, layers, k: int, *, arms=("vqa",), per_arm: int = 2000,
                        seed: int = 0, max_points: int = 0) -> centroids_lib.CentroidSet:
  """Collects hidden states on the calibration set and fits the centroid set (sharded K-means)."""
  examples = calibration_examples(ctx, arms, per_arm)
  states = hidden.collect(ctx.model, ctx.params, _batches(ctx, examples), tuple(layers),
                          ctx.to_host)
  cset = centroids_lib.fit_centroids(states, layers, k, seed=seed, mesh=ctx.mesh,
                                     max_points=max_points)
  cset.meta.update(calibration={"arms": list(arms), "per_arm": per_arm,
                                "examples": len(examples)}, seed=seed)
  return cset


def eval_questions(ctx: Run, max_examples: int = 0):
  """(prompts, normalised answers, qtypes) of the VQA eval; an evenly strided subset of at most
  `max_examples` (> 0) records, since the records are grouped by scene and question type."""
  recs = load_eval_records(ctx.config)
  if max_examples and len(recs) > max_examples:
    recs = recs[::-(-len(recs) // max_examples)][:max_examples]
  build = _builder(ctx)
  prompts = [build(r, prompt_only=True) for r in recs]
  answers = [normalize_answer(str(r["meta"]["answer"])) for r in recs]
  qtypes = [str(r["meta"].get("qtype", "all")) for r in recs]
  return prompts, answers, qtypes


def score(qtypes: list[str], answers: list[str], predictions: list[str]) -> dict[str, dict]:
  """{"accuracy": {qtype|all: exact match}, "majority": {qtype: most-frequent-answer rate},
  "count": {qtype|all: n}} from aligned normalised lists. Kept here (not the evaluator's
  summary) so the probe's numbers do not move with evaluator output formats."""
  groups = collections.defaultdict(list)
  for q, a, p in zip(qtypes, answers, predictions):
    groups[q].append((a, p))
    groups["all"].append((a, p))
  return {
      "accuracy": {q: sum(a == p for a, p in v) / len(v) for q, v in sorted(groups.items())},
      "majority": {q: collections.Counter(a for a, _ in v).most_common(1)[0][1] / len(v)
                   for q, v in sorted(groups.items()) if q != "all"},
      "count": {q: len(v) for q, v in sorted(groups.items())},
  }


def evaluate(ctx: Run, questions, generate_fn) -> dict[str, dict]:
  """`score` of `generate_fn(global prompt batch) -> int32[B, N]` answers (cut at EOS/pad)."""
  prompts, answers, qtypes = questions
  tok = ctx.tokenizer
  predictions = []
  for batch, n_real in _batches(ctx, prompts):
    ids = generate.cut_at_stop(ctx.to_host(generate_fn(batch))[:n_real],
                               (tok.eos_id, tok.pad_id))
    predictions += [normalize_answer(tok.decode(row)) for row in ids]
  return score(qtypes, answers, predictions)


def drops(base: dict, text: dict, image: dict) -> dict[str, dict]:
  """Per qtype (and 'all'): accuracies, drops (base - erased) and text/image drop ratio
  (None when the image drop is 0)."""
  b, t, i = base["accuracy"], text["accuracy"], image["accuracy"]
  out = {}
  for q in b:
    dt, di = b[q] - t[q], b[q] - i[q]
    out[q] = {"base": b[q], "text_erased": t[q], "image_erased": i[q], "text_drop": dt,
              "image_drop": di, "ratio": dt / di if di else None}
  return out


def run(ctx: Run, cset, *, alphas=(0.0, 0.5, 1.0, 2.0), beta: float = 0.1,
        max_examples: int = 0, log=print) -> dict:
  """Erasure evaluations and the TCCD alpha sweep; returns the JSON-ready result."""
  depth = ctx.config.model.decoder.depth
  max_len = ctx.config.eval.max_decode_len
  questions = eval_questions(ctx, max_examples)
  model, params = ctx.model, ctx.params
  layers = {m: centroids_lib.erase_layers(cset, m, depth) for m in ("text", "image")}
  vocab = ctx.tokenizer.vocab_size  # never an id past the tokenizer's (a padded model vocab)
  runs = {
      "none": lambda b: decoding.erased_generate(model, params, b, None, max_new_tokens=max_len,
                                               valid_vocab=vocab),
      "text": lambda b: decoding.erased_generate(model, params, b, layers["text"],
                                               modality="text", max_new_tokens=max_len,
                                               valid_vocab=vocab),
      "image": lambda b: decoding.erased_generate(model, params, b, layers["image"],
                                                modality="image", max_new_tokens=max_len,
                                                valid_vocab=vocab),
  }
  summaries = {}
  for name, fn in runs.items():
    summaries[name] = evaluate(ctx, questions, fn)
    log(f"erase={name}: accuracy {summaries[name]['accuracy']['all']:.4f}")
  tccd = {}
  for alpha in alphas:
    fn = lambda b, a=alpha: decoding.tccd_generate(model, params, b, layers["text"], a, beta,
                                                     max_new_tokens=max_len, valid_vocab=vocab)
    tccd[str(alpha)] = evaluate(ctx, questions, fn)["accuracy"]
    log(f"tccd alpha={alpha} beta={beta}: accuracy {tccd[str(alpha)]['all']:.4f}")
  base = summaries["none"]["accuracy"]
  return {
      "layers": list(cset.layers), "k": cset.k, "beta": beta, "alphas": list(alphas),
      "num_questions": len(questions[0]),
      "counts": summaries["none"]["count"], "majority": summaries["none"]["majority"],
      "erasure": drops(summaries["none"], summaries["text"], summaries["image"]),
      "tccd": {a: {q: {"accuracy": acc[q], "gain": acc[q] - base[q]} for q in acc}
               for a, acc in tccd.items()},
      "centroids": cset.meta,
  }


def format_report(result: dict) -> str:
  """A plain-text table of the erasure drops and TCCD gains per question type."""
  er = result["erasure"]
  lines = [f"layers {result['layers']}  k {result['k']}  questions {result['num_questions']}",
           f"{'qtype':<10} {'base':>6} {'-text':>6} {'-image':>6} {'drop_t':>7} {'drop_i':>7} "
           f"{'ratio':>6}"]
  for q, r in sorted(er.items()):
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
    lines.append(f"{q:<10} {r['base']:>6.3f} {r['text_erased']:>6.3f} {r['image_erased']:>6.3f} "
                 f"{r['text_drop']:>7.3f} {r['image_drop']:>7.3f} {ratio:>6}")
  lines.append(f"TCCD (beta {result['beta']}): accuracy (gain) per alpha")
  for a, per in result["tccd"].items():
    cells = "  ".join(f"{q} {v['accuracy']:.3f} ({v['gain']:+.3f})" for q, v in sorted(per.items()))
    lines.append(f"  alpha {a}: {cells}")
  return "\n".join(lines)


def _qtypes(per_type: dict) -> list[str]:
  return sorted(q for q in per_type if q != "all") + (["all"] if "all" in per_type else [])


def ratio_cell(row: dict, n: int) -> str:
  """The text/image drop ratio, or '-' when the image drop is within twice the binomial standard
  error of the accuracy without erasure, sqrt(p (1 - p) / n): a ratio over a drop that small is
  noise (0.017 / 0.001 would read as 17)."""
  p = row["base"]
  if row["ratio"] is None or row["image_drop"] <= 2 * math.sqrt(p * (1 - p) / max(n, 1)):
    return "-"
  return f"{row['ratio']:.1f}"


def markdown_report(result: dict, source: str = "") -> list[str]:
  """Markdown of one probe result (`run`'s JSON, as tools/probe.py writes it): the erasure table
  per question type and the TCCD table, accuracy (gain over plain decoding) per alpha."""
  er, counts = result["erasure"], result["counts"]
  types = _qtypes(er)
  layers = ", ".join(str(x) for x in result["layers"])
  cal = result.get("centroids", {})
  points = cal.get("points", {})
  lines = [f"### Probe: erased after block(s) {layers}, k = {result['k']}, TCCD b = "
           f"{result['beta']:g}", ""]
  lines += [f"{result['num_questions']} questions, checkpoint step {result.get('step')}; "
            f"centroids from {points.get('text', '?')} text and {points.get('image', '?')} "
            f"image positions of {cal.get('calibration', {}).get('examples', '?')} training "
            f"records ({', '.join(cal.get('calibration', {}).get('arms', []))}), K-means seed "
            f"{cal.get('seed')}" + (f"; `{source}`" if source else "") + ".", ""]
  lines += ["Erasure:", "", "| question type | n | majority | no erasure | text erased | "
            "image erased | text drop | image drop | ratio |", "|" + "---|" * 9]
  for q in types:
    r, n = er[q], int(counts.get(q, 0))
    majority = result.get("majority", {}).get(q)
    lines.append(f"| {q} | {n} | {'-' if majority is None else f'{majority:.3f}'} | "
                 f"{r['base']:.3f} | {r['text_erased']:.3f} | {r['image_erased']:.3f} | "
                 f"{r['text_drop']:+.3f} | {r['image_drop']:+.3f} | {ratio_cell(r, n)} |")
  lines += ["", f"TCCD against the text-erased reference, b = {result['beta']:g}: accuracy (gain "
            "over plain decoding) per a:", "",
            "| a | " + " | ".join(types) + " |", "|" + "---|" * (len(types) + 1)]
  for alpha, per in sorted(result["tccd"].items(), key=lambda kv: float(kv[0])):
    cells = [f"{per[q]['accuracy']:.3f} ({per[q]['gain']:+.3f})" for q in types]
    lines.append(f"| {float(alpha):g} | " + " | ".join(cells) + " |")
  return lines + [""]
