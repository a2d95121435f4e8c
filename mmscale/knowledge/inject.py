"""Cross-modal knowledge injection (stage `compare`): a pair of descriptors -> comparative and
relational text {shared, differences, relational_knowledge}, rendered as the text of a two-image
`pair` record.

Offline: objects of the two images are matched by name (then by most shared attributes);
`shared` lists each matched object with the attributes both images agree on, `differences` each
attribute that differs ({object, attribute kind, first, second}), objects present in one image
only, and relations that hold in one image only; `relational_knowledge` states what follows from
the knowledge base for the objects of the pair (facts they share, facts that tell them apart).
"""
from mmscale.knowledge import schema as js
from mmscale.knowledge.enrich import object_phrase
from mmscale.knowledge.pairing import relation_set
from mmscale.knowledge.vocab import Vocabulary

COMPARE_PROMPT_VERSION = "compare-v1"
COMPARE_INSTRUCTIONS = (
    "You compare two images described by structured descriptors ('first' and 'second'). List what "
    "they share, every difference (object, attribute, value in the first image, value in the "
    "second; use 'yes'/'no' for presence or relations that hold in one image only), and "
    "relational knowledge that follows from the facts given under 'knowledge' (shared or "
    "contrasting facts of the objects). Use only the given information. Answer with JSON.")
DIFFERENCE_SCHEMA = js.obj({"object": {"type": "string"}, "attribute": {"type": "string"},
                            "first": {"type": "string"}, "second": {"type": "string"}})
COMPARE_SCHEMA = js.obj({"shared": js.string_array(),
                         "differences": {"type": "array", "items": DIFFERENCE_SCHEMA},
                         "relational_knowledge": js.string_array()})


def match_objects(a: list, b: list) -> tuple:
  """Greedy alignment: -> ([(obj_a, obj_b)], only_a, only_b)."""
  rest, pairs, only_a = list(b), [], []
  for oa in a:
    cands = [ob for ob in rest if ob["name"] == oa["name"]]
    if not cands:
      only_a.append(oa)
      continue
    ob = max(cands, key=lambda o: len(set(o["attributes"]) & set(oa["attributes"])))
    rest.remove(ob)
    pairs.append((oa, ob))
  return pairs, only_a, rest


def _kind(attr: str, vocab: Vocabulary) -> str:
  return vocab.kind_of.get(attr, "attribute")


def _attr_differences(oa: dict, ob: dict, vocab: Vocabulary) -> list:
  ka = {}
  for a in oa["attributes"]:
    ka.setdefault(_kind(a, vocab), []).append(a)
  kb_ = {}
  for a in ob["attributes"]:
    kb_.setdefault(_kind(a, vocab), []).append(a)
  out = []
  for kind in sorted(set(ka) | set(kb_), key=lambda k: vocab.kind_order.get(k, -1)):
    va, vb = " ".join(ka.get(kind, [])), " ".join(kb_.get(kind, []))
    if va != vb:
      out.append({"object": oa["name"], "attribute": kind, "first": va or "none",
                  "second": vb or "none"})
  if oa.get("count", 1) != ob.get("count", 1):
    out.append({"object": oa["name"], "attribute": "count", "first": str(oa.get("count", 1)),
                "second": str(ob.get("count", 1))})
  return out


def relational_knowledge(names: list, knowledge: dict) -> list:
  """Facts shared by two distinct object names of the pair, and facts that tell them apart."""
  out = []
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      fa = {f.split(" ", 1)[0]: f for f in knowledge.get(a, {}).get("facts", [])}
      fb = {f.split(" ", 1)[0]: f for f in knowledge.get(b, {}).get("facts", [])}
      for key in sorted(set(fa) & set(fb)):
        if fa[key] == fb[key]:
          out.append(f"{a} and {b} share {fa[key]}")
        else:
          out.append(f"{a} has {fa[key]} but {b} has {fb[key]}")
  return out


def compare(first: dict, second: dict, knowledge: dict, vocab: Vocabulary) -> dict:
  """The comparison of two descriptors (see module docstring)."""
  pairs, only_a, only_b = match_objects(first["objects"], second["objects"])
  shared, diffs = [], []
  for oa, ob in pairs:
    common = [a for a in oa["attributes"] if a in ob["attributes"]]
    shared.append(object_phrase({"name": oa["name"], "attributes": common}, vocab))
    diffs += _attr_differences(oa, ob, vocab)
  diffs += [{"object": o["name"], "attribute": "presence", "first": "yes", "second": "no"}
            for o in only_a]
  diffs += [{"object": o["name"], "attribute": "presence", "first": "no", "second": "yes"}
            for o in only_b]
  ra, rb = relation_set(first), relation_set(second)
  diffs += [{"object": s, "attribute": f"{p} {o}", "first": "yes", "second": "no"}
            for s, p, o in sorted(ra - rb)]
  diffs += [{"object": s, "attribute": f"{p} {o}", "first": "no", "second": "yes"}
            for s, p, o in sorted(rb - ra)]
  names = sorted({o["name"] for o in first["objects"] + second["objects"]})
  return {"shared": shared, "differences": diffs,
          "relational_knowledge": relational_knowledge(names, knowledge)}


def render_comparison(comp: dict) -> str:
  """Two-image training text: 'shared : ... . first : ... . second : ... . knowledge : ... .'"""
  parts = []
  if comp["shared"]:
    parts.append("shared : " + " , ".join(comp["shared"]) + " .")
  first = [f"{d['object']} {d['attribute']} {d['first']}" for d in comp["differences"]]
  second = [f"{d['object']} {d['attribute']} {d['second']}" for d in comp["differences"]]
  if first:
    parts.append("first : " + " , ".join(first) + " .")
    parts.append("second : " + " , ".join(second) + " .")
  if comp["relational_knowledge"]:
    parts.append("knowledge : " + " , ".join(comp["relational_knowledge"]) + " .")
  return " ".join(parts)


def knowledge_for(descs: list, kb: dict) -> dict:
  """{name: entity} for the names of both images: descriptor entities first, then the KB."""
  out = {}
  for d in descs:
    for e in d.get("entities", []):
      out.setdefault(e["name"], e)
    for o in d["objects"]:
      if o["name"] in kb:
        out.setdefault(o["name"], kb[o["name"]])
  return out


def compare_input(first: dict, second: dict, kb: dict) -> dict:
  return {"first": first, "second": second, "knowledge": knowledge_for([first, second], kb)}


def offline_compare(payload: dict, ctx) -> dict:
  return compare(payload["first"], payload["second"], payload.get("knowledge", {}), ctx.vocab)
