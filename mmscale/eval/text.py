"""Text-only ability, so that a loss of language ability during multimodal training is visible.

- Perplexity of held-out text documents: `world/eval/text` records when a world provides them,
  else fact documents sampled afresh from the world's knowledge base (`world.json` kb) with
  `fact_document` and a stream no arm uses (`eval_text`): new combinations and paraphrases of
  the facts, in the style of the `text` arm.
- Exact match on text-only fact questions: the ungrounded knowledge questions of `eval/vqa`
  ("where does the cross live ?"), asked with the image removed; split by whether the shape's
  facts were taught in the VQA arm (`meta.taught`).
"""

from __future__ import annotations

import os

from mmscale.data import world as world_lib
from mmscale.data import world_text
from mmscale.data.transforms import builder_for
from mmscale.eval.answers import normalize_answer
from mmscale.runtime import Run
from mmscale.eval.records import load_eval_records, read_records
from mmscale.eval.heldout_loss import loss_of_examples
from mmscale.eval.predict import generate_for_records
from mmscale.eval.registry import register_evaluator


def heldout_text_records(config) -> list[dict]:
  """`eval.text_docs` text records (see module docstring for where they come from)."""
  n = int(config.eval.text_docs)
  directory = os.path.join(config.data.world_dir, "eval", "text")
  if os.path.isdir(directory):
    return read_records(directory, n)
  world = world_lib.load_world(config.data.world_dir)
  kb, shapes = world["kb"], list(world["spec"].shapes)
  rng = world_lib.stream(int(world.get("seed", 0)), "eval_text")
  out = []
  for d in range(n):
    k = int(rng.integers(1, min(3, len(shapes)) + 1))
    chosen = [shapes[i] for i in rng.choice(len(shapes), size=k, replace=False)]
    text, _ = world_text.fact_document(chosen, kb, rng)
    out.append({"id": f"evaltext-{d:06d}", "kind": "text", "images": [],
                "segments": [{"text": text, "loss": True}], "descriptor": None,
                "meta": {"shapes": chosen}})
  return out


def text_only(rec: dict) -> dict:
  """The record without its images (a text question)."""
  return {**rec, "kind": "text", "images": [],
          "segments": [s for s in rec["segments"] if "image" not in s]}


def fact_questions(config) -> list[dict]:
  return [text_only(rec) for rec in load_eval_records(config)
          if rec["meta"].get("qtype") == "knowledge"
          and str(rec["meta"].get("qform", "")).startswith("ungrounded")]


@register_evaluator("text")
def evaluate_text(ctx: Run) -> dict[str, float]:
  cfg = ctx.config
  builder = builder_for(cfg.data, ctx.layout, ctx.tokenizer)
  sums = loss_of_examples(ctx, [builder(r) for r in heldout_text_records(cfg)])
  out = {"text/loss": sums["loss"], "text/perplexity": sums["perplexity"],
         "text/targets": sums["weight"]}
  questions = fact_questions(cfg)
  texts = generate_for_records(ctx, questions,
                               max_new_tokens=int(cfg.eval.max_decode_len))
  groups = {"all": [], "taught": [], "untaught": []}
  for q, t in zip(questions, texts):
    hit = float(normalize_answer(t) == normalize_answer(q["meta"]["answer"]))
    groups["all"].append(hit)
    if "taught" in q["meta"]:
      groups["taught" if q["meta"]["taught"] else "untaught"].append(hit)
  for name, hits in groups.items():
    if hits:
      out[f"text/fact_accuracy/{name}"] = sum(hits) / len(hits)
    out[f"text/fact_count/{name}"] = len(hits)
  return out
