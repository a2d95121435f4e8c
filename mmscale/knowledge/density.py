"""Knowledge density of a record directory: what its text states, how densely, and how much of an
evaluation concept inventory it covers ("Caption First, VQA Second", arXiv 2604.13054, finds that
performance tracks semantic coverage more than task diversity; this measures the coverage).

Counted from each record's descriptor (the world's are exact ground truth; real data gets them
from the `describe` stage, or on the fly with `describe=` here):
- unique `concepts` (object and entity names, the generic 'object' excluded), `attributes`
  ((name, attribute) pairs), `relations` ((subject, predicate, object) with inverse predicates
  folded: 'b right of a' == 'a left of b'), `facts` ((entity, fact) pairs), `comparisons`
  (pair differences (object, attribute, first, second));
- `statements`: every stated item with repetition (an object with its count, each attribute,
  relation, fact and difference), per record and per text token (whitespace words, or a
  tokenizer's pieces);
- `coverage` of an inventory {concepts, attributes, relations, facts}: the fraction of each set
  found; relations are compared as head-noun schemas ('ring left of circle'), since an eval set's
  relation instances name other scenes' objects;
- `task_formats`: distinct formats (record kind; VQA split by question form), task diversity.
"""
import collections
import json
import os

from mmscale.data import records
from mmscale.knowledge.pairing import _rel_key
from mmscale.knowledge.vocab import GENERIC_NOUN

CATEGORIES = ("concepts", "attributes", "relations", "facts")


def _head(ref: str) -> str:
  return ref.split()[-1] if ref else ref


def relation_schema(rel: tuple) -> tuple:
  s, p, o = rel
  return (_head(s), p.removeprefix("not "), _head(o))


def items(desc: dict) -> dict:
  """The stated items of one descriptor by category, with repetition (lists)."""
  objs = desc.get("objects", [])
  ents = desc.get("entities", [])
  comp = (desc.get("comparison") or {}).get("differences", [])
  return {
      "concepts": [o["name"] for o in objs if o["name"] != GENERIC_NOUN]
                  + [e["name"] for e in ents],
      "objects": [(o["name"], o.get("count", 1)) for o in objs],
      "attributes": [(o["name"], a) for o in objs for a in o["attributes"]],
      "relations": [_rel_key(r) for r in desc.get("relations", [])],
      "facts": [(e["name"], f) for e in ents for f in e["facts"]],
      "comparisons": [(d["object"], d["attribute"], d["first"], d["second"]) for d in comp],
  }


def task_format(rec: dict) -> str:
  if rec["kind"] != "vqa":
    return rec["kind"]
  meta = rec.get("meta") or {}
  form = meta.get("qform") or meta.get("qtype")
  if not form:
    q = next((s["text"] for s in rec["segments"] if "text" in s and not s["loss"]), "")
    form = " ".join(q.split()[:2])
  return f"vqa:{form}"


def inventory_from_records(record_dir: str) -> dict:
  """Inventory of an evaluation set: every item its questions' descriptors mention."""
  inv = {c: set() for c in CATEGORIES}
  for rec in records.iter_records(record_dir):
    if rec.get("descriptor"):
      it = items(rec["descriptor"])
      inv["concepts"] |= set(it["concepts"])
      inv["attributes"] |= set(it["attributes"])
      inv["relations"] |= {relation_schema(r) for r in it["relations"]}
      inv["facts"] |= set(it["facts"])
  return inv


def load_inventory(path: str) -> dict:
  """A record directory (an eval set) or a JSON file {concepts: [..], attributes: [[n, a]], ...}."""
  if os.path.isdir(path):
    return inventory_from_records(path)
  with open(path) as f:
    d = json.load(f)
  return {c: {x if isinstance(x, str) else tuple(x) for x in d.get(c, [])} for c in CATEGORIES}


def _tokens(rec: dict, count_tokens) -> int:
  return sum(count_tokens(s["text"]) for s in rec["segments"] if "text" in s)


def report(recs, *, inventory: dict | None = None, count_tokens=None, describe=None) -> dict:
  """The density report over an iterable of records (see module docstring).

  `count_tokens(text) -> int` (default whitespace words); `describe(rec) -> descriptor` fills in
  records that have none (otherwise they are counted in `records_without_descriptor`)."""
  count_tokens = count_tokens or (lambda t: len(t.split()))
  unique = {c: set() for c in CATEGORIES + ("comparisons",)}
  rel_schemas = set()
  formats = collections.Counter()
  n = no_desc = tokens = statements = 0
  for rec in recs:
    n += 1
    formats[task_format(rec)] += 1
    tokens += _tokens(rec, count_tokens)
    desc = rec.get("descriptor") or (describe(rec) if describe else None)
    if not desc:
      no_desc += 1
      continue
    it = items(desc)
    for c in unique:
      unique[c] |= set(it[c])
    rel_schemas |= {relation_schema(r) for r in it["relations"]}
    statements += sum(len(it[k]) for k in ("objects", "attributes", "relations", "facts",
                                           "comparisons"))
  out = {"records": n, "records_without_descriptor": no_desc, "tokens": tokens,
         "statements": statements,
         "unique": {c: len(v) for c, v in unique.items()},
         "unique_total": sum(len(unique[c]) for c in CATEGORIES),
         "statements_per_record": statements / n if n else 0.0,
         "statements_per_token": statements / tokens if tokens else 0.0,
         "unique_per_1k_tokens": 1000 * sum(len(unique[c]) for c in CATEGORIES) / tokens
                                 if tokens else 0.0,
         "task_formats": len(formats), "formats": dict(sorted(formats.items()))}
  if inventory is not None:
    found = {**{c: unique[c] for c in CATEGORIES}, "relations": rel_schemas}
    cov = {}
    for c in CATEGORIES:
      inv = inventory.get(c, set())
      cov[c] = {"covered": len(inv & found[c]), "total": len(inv),
                "fraction": len(inv & found[c]) / len(inv) if inv else 1.0}
    covered, total = sum(v["covered"] for v in cov.values()), sum(v["total"] for v in cov.values())
    out["coverage"] = {**cov, "overall": covered / total if total else 1.0}
  return out


def report_dir(record_dir: str, **kwargs) -> dict:
  return {"dir": record_dir, **report(records.iter_records(record_dir), **kwargs)}
