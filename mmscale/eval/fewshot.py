"""Few-shot in-context VQA: k support examples (image, question, answer) before the query.

A prompt is the concatenation of unpacked examples (transforms docstring), as in an interleaved
document: [BOS] [img_1] q_1 a_1 [img_2] q_2 a_2 ... [img_q] q_q. Each support keeps its own
masks (image + question a bidirectional prefix block, the answer causal); its BOS and EOS are
dropped so that supports run on like the captions of an interleaved training document. Supports
are other held-out questions from *other scenes* (the query's image never appears twice), drawn
with `np.random.default_rng([eval.seed, query index])`, so every shot count and every mesh sees
the same supports. When `eval.fewshot_max_len` > 0, the earliest supports are dropped until the
prompt fits; `fewshot/<k>shot/mean_shots` reports how many were used.
"""

from __future__ import annotations

import numpy as np

from mmscale.data.transforms import ExampleBuilder, builder_for
from mmscale.eval.answers import normalize_answer
from mmscale.runtime import Run
from mmscale.eval.records import eval_dir, read_records
from mmscale.eval.predict import generate_texts
from mmscale.eval.registry import register_evaluator
from mmscale.eval.vqa import summarize


def concat_examples(examples: list[dict]) -> dict:
  """Unpacked examples -> one: tokens/mask_ar/mask_loss int32[sum L_i], image_positions shifted
  by each example's offset, images float32[sum n_i, S, S, 3]."""
  out = {"tokens": [], "mask_ar": [], "mask_loss": [], "image_positions": [], "images": []}
  offset = 0
  for ex in examples:
    for key in ("tokens", "mask_ar", "mask_loss"):
      out[key].append(np.asarray(ex[key], np.int32))
    out["image_positions"].append(np.asarray(ex["image_positions"], np.int32) + offset)
    out["images"].append(np.asarray(ex["images"], np.float32))
    offset += len(ex["tokens"])
  return {k: np.concatenate(v) for k, v in out.items()}


def _trim(ex: dict, start: int, stop: int) -> dict:
  """Tokens [start, stop) of an unpacked example (images kept; positions shifted)."""
  return {**{k: ex[k][start:stop] for k in ("tokens", "mask_ar", "mask_loss")},
          "image_positions": ex["image_positions"] - start, "images": ex["images"]}


def build_prompt(builder: ExampleBuilder, supports: list[dict], query: dict,
                 max_len: int = 0) -> tuple[dict, int]:
  """(few-shot prompt example, supports used). Supports are full records (answer included)."""
  query_ex = builder(query, prompt_only=True)
  parts = []
  for rec in supports:
    ex = builder(rec)
    stop = len(ex["tokens"]) - (1 if ex["tokens"][-1] == builder.eos_id else 0)
    parts.append(_trim(ex, 1, stop))  # no BOS (the prompt has one), no EOS
  while max_len and parts and 1 + sum(len(p["tokens"]) for p in parts) + \
      len(query_ex["tokens"]) - 1 > max_len:
    parts.pop(0)
  head = _trim(query_ex, 0, 1)  # BOS
  head["image_positions"] = np.zeros((0,), np.int32)
  head["images"] = query_ex["images"][:0]
  return concat_examples([head, *parts, _trim(query_ex, 1, len(query_ex["tokens"]))]), len(parts)


def choose_supports(pool: list[dict], query_index: int, query: dict, shots: int,
                    seed: int) -> list[dict]:
  """`shots` pool records from scenes other than the query's, fixed by (seed, query index)."""
  scene = query["meta"].get("scene_id")
  candidates = [r for r in pool if scene is None or r["meta"].get("scene_id") != scene]
  rng = np.random.default_rng([seed, query_index])
  order = rng.permutation(len(candidates))[:shots]
  return [candidates[i] for i in order]


@register_evaluator("fewshot")
def evaluate_fewshot(ctx: Run) -> dict[str, float]:
  cfg = ctx.config
  pool = read_records(eval_dir(cfg))
  queries = pool[:int(cfg.eval.max_examples)] if int(cfg.eval.max_examples) else pool
  if int(cfg.eval.fewshot_queries):  # 3 shot counts x long prompts: the costliest evaluator
    queries = queries[:int(cfg.eval.fewshot_queries)]
  builder = builder_for(cfg.data, ctx.layout, ctx.tokenizer)
  seed, max_len = int(cfg.eval.seed), int(cfg.eval.fewshot_max_len)
  answers = [[normalize_answer(q["meta"]["answer"])] for q in queries]
  qtypes = [str(q["meta"].get("qtype") or "all") for q in queries]
  out = {}
  for shots in cfg.eval.fewshot_shots:
    built = [build_prompt(builder, choose_supports(pool, i, q, int(shots), seed), q, max_len)
             for i, q in enumerate(queries)]
    texts = generate_texts(ctx, [p for p, _ in built],
                           max_new_tokens=int(cfg.eval.max_decode_len))
    prefix = f"fewshot/{int(shots)}shot"
    out.update(summarize(qtypes, answers, [normalize_answer(t) for t in texts], prefix))
    out[f"{prefix}/mean_shots"] = sum(n for _, n in built) / max(len(built), 1)
  return out
