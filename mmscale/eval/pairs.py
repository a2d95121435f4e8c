"""Multi-image questions over two-image `pair` records: which image has an object, what differs.

The world has no pair eval split, so the questions are built here from each pair record's
ground truth (`meta.scenes`: per image, objects as [shape, colour, size, texture, row, col]):
- `which`: "what image is the {colour} {shape} in ?" -> first | second, for an object present
  in exactly one image (alternating the side by record index, so answers are balanced);
- `differs`: "what {attribute} is the {shape} in the {first|second} image ?" for a shape that
  appears once in each image with a different colour or size -> that image's value.
The wording stays inside the world's vocabulary (its word-level tokenizer knows every word).
Prompt: [image 0][image 1] question; scored by exact match per question type.
"""

from __future__ import annotations

import os

from mmscale.eval.answers import normalize_answer
from mmscale.runtime import Run
from mmscale.eval.records import read_records
from mmscale.eval.predict import generate_for_records
from mmscale.eval.registry import register_evaluator
from mmscale.eval.vqa import summarize

SIDES = ("first", "second")
ATTRIBUTES = {"colour": 1, "size": 2}  # attribute -> column of a compact object


def pairs_dir(config) -> str:
  """`world/eval/pairs` when a world provides one, else the `pairs` arm's records."""
  held_out = os.path.join(config.data.world_dir, "eval", "pairs")
  return held_out if os.path.isdir(held_out) else os.path.join(config.data.world_dir, "arms",
                                                               "pairs")


def _which(scenes: list, index: int) -> tuple[str, str] | None:
  keys = [[(o[1], o[0]) for o in objs] for objs in scenes]
  for offset in (0, 1):
    side = (index + offset) % 2
    only = [k for k in keys[side] if k not in keys[1 - side] and keys[side].count(k) == 1]
    if only:
      colour, shape = sorted(only)[0]
      return f"what image is the {colour} {shape} in ?", SIDES[side]
  return None


def _differs(scenes: list, index: int) -> tuple[str, str] | None:
  shapes = [[o[0] for o in objs] for objs in scenes]
  side = index % 2
  for shape in sorted(set(shapes[0]) & set(shapes[1])):
    if shapes[0].count(shape) != 1 or shapes[1].count(shape) != 1:
      continue
    a = next(o for o in scenes[0] if o[0] == shape)
    b = next(o for o in scenes[1] if o[0] == shape)
    for attribute, col in ATTRIBUTES.items():
      if a[col] != b[col]:
        value = (a, b)[side][col]
        return f"what {attribute} is the {shape} in the {SIDES[side]} image ?", value
  return None


QUESTION_BUILDERS = {"which": _which, "differs": _differs}


def pair_questions(rec: dict, index: int) -> list[dict]:
  """VQA-shaped records (two images, question, answer) built from one pair record."""
  scenes = (rec.get("meta") or {}).get("scenes") or []
  if len(scenes) != 2 or len(rec.get("images") or []) != 2:
    return []
  out = []
  for qtype, build in QUESTION_BUILDERS.items():
    qa = build(scenes, index)
    if qa is None:
      continue
    question, answer = qa
    out.append({"id": f"{rec.get('id', index)}-{qtype}", "kind": "vqa", "images": rec["images"],
                "segments": [{"image": 0}, {"image": 1}, {"text": question, "loss": False},
                             {"text": answer, "loss": True}],
                "descriptor": None, "meta": {"qtype": qtype, "answer": answer}})
  return out


@register_evaluator("pairs")
def evaluate_pairs(ctx: Run) -> dict[str, float]:
  cfg = ctx.config
  limit = int(cfg.eval.pairs_records) or int(cfg.eval.max_examples)
  recs = read_records(pairs_dir(cfg), limit)
  questions = [q for i, rec in enumerate(recs) for q in pair_questions(rec, i)]
  texts = generate_for_records(ctx, questions,
                               max_new_tokens=int(cfg.eval.max_decode_len))
  answers = [[normalize_answer(q["meta"]["answer"])] for q in questions]
  return summarize([q["meta"]["qtype"] for q in questions], answers,
                   [normalize_answer(t) for t in texts], prefix="pairs")
