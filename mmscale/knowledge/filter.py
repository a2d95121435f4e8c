"""Semantic filter (stage `filter`): keep or reject a comparative pair record, with a reason.

Online the LLM judges the comparison against both descriptors ({keep, reason}); offline a
consistency check does: every shared object must exist in both images with those attributes,
every difference must hold (values present in the right image, presence and relation claims
true), relational knowledge must name objects of the pair, and there must be at least one
difference (fine-grained contrast). The first failing check is the reason.
"""
from mmscale.knowledge import schema as js
from mmscale.knowledge.inject import match_objects
from mmscale.knowledge.pairing import relation_set
from mmscale.knowledge.parse import read_np

FILTER_PROMPT_VERSION = "filter-v1"
FILTER_INSTRUCTIONS = (
    "You are a strict semantic filter for training data. Given the descriptors of two images and "
    "a comparison of them, keep the comparison only if every statement in it is supported by the "
    "descriptors and it states at least one real difference. Answer with JSON {\"keep\": bool, "
    "\"reason\": str}; the reason is a short snake_case key such as ok, unsupported_shared, "
    "wrong_difference, no_difference.")
FILTER_SCHEMA = js.obj({"keep": {"type": "boolean"}, "reason": {"type": "string"}})


def _has(desc: dict, name: str, attrs: set) -> bool:
  return any(o["name"] == name and attrs <= set(o["attributes"]) for o in desc["objects"])


def _difference_ok(d: dict, first: dict, second: dict) -> bool:
  if d["attribute"] == "presence":
    na = sum(o["name"] == d["object"] for o in first["objects"])
    nb = sum(o["name"] == d["object"] for o in second["objects"])
    return (d["first"], d["second"]) == (("yes", "no") if na > nb else ("no", "yes")) and na != nb
  if d["first"] in ("yes", "no") and d["second"] in ("yes", "no"):
    ra, rb = relation_set(first), relation_set(second)
    pred_obj = d["attribute"]
    holds_a = any(s == d["object"] and f"{p} {o}" == pred_obj for s, p, o in ra)
    holds_b = any(s == d["object"] and f"{p} {o}" == pred_obj for s, p, o in rb)
    return holds_a == (d["first"] == "yes") and holds_b == (d["second"] == "yes")
  if d["attribute"] == "count":
    return True
  ok_a = d["first"] == "none" or _has(first, d["object"], set(_split(d["first"], first)))
  ok_b = d["second"] == "none" or _has(second, d["object"], set(_split(d["second"], second)))
  return ok_a and ok_b and d["first"] != d["second"]


def _split(value: str, desc: dict) -> list:
  """'large red' -> attributes of the object as stored ('top center' stays one attribute)."""
  attrs = {a for o in desc["objects"] for a in o["attributes"]}
  if value in attrs:
    return [value]
  return value.split()


def check(first: dict, second: dict, comparison: dict, vocab) -> dict:
  """Offline consistency check -> {keep, reason}."""
  if not comparison["differences"]:
    return {"keep": False, "reason": "no_difference"}
  for phrase in comparison["shared"]:
    r = read_np(phrase.split(), 0, vocab)
    if r is None or r[1] != len(phrase.split()):
      return {"keep": False, "reason": "unparsable_shared"}
    np_ = r[0]
    if not (_has(first, np_.noun, set(np_.attrs)) and _has(second, np_.noun, set(np_.attrs))):
      return {"keep": False, "reason": "unsupported_shared"}
  for d in comparison["differences"]:
    if not _difference_ok(d, first, second):
      return {"keep": False, "reason": "wrong_difference"}
  names = {o["name"] for o in first["objects"] + second["objects"]}
  for line in comparison["relational_knowledge"]:
    if not names & set(line.split()):
      return {"keep": False, "reason": "unrelated_knowledge"}
  pairs, _, _ = match_objects(first["objects"], second["objects"])
  if not pairs:
    return {"keep": False, "reason": "no_alignment"}
  return {"keep": True, "reason": "ok"}


def filter_input(first: dict, second: dict, comparison: dict, text: str) -> dict:
  return {"first": first, "second": second, "comparison": comparison, "text": text}


def offline_filter(payload: dict, ctx) -> dict:
  return check(payload["first"], payload["second"], payload["comparison"], ctx.vocab)
