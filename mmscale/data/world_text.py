"""Text of the knowledge world's arms, each with the descriptor of exactly what the text states.

Text is lowercase words separated by single spaces with punctuation as separate words, so a
word-level tokenizer of ~100 pieces covers it. Dense text stays compact (`large red circle top
left .`) because text length is the CPU budget (arms are compared at equal token budgets).
Because every descriptor lists only what its text says, semantic coverage per arm is exact
(descriptor schema: docs/data_format.md, "Descriptor").
"""
import numpy as np

from mmscale.data.world_scenes import Obj, Scene, canonical_relations
from mmscale.data.world_spec import NUMBER_WORDS, WorldSpec

INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
CAPTION_TEMPLATES = ("{x} .", "there is {x} .", "an image of {x} .")
FACT_TEMPLATES = {
    "family": ("the {s} belongs to family {v} .", "the {s} is in family {v} .",
               "{s} : family {v} .", "family {v} includes the {s} ."),
    "habitat": ("the {s} lives in the {v} .", "{s} : habitat {v} .",
                "the {v} is home to the {s} ."),
    "weight": ("the {s} is {v} .", "{s} : weight {v} .", "a {s} is a {v} shape ."),
}
SHARED_FACT_TEMPLATE = "the {a} and the {b} both have {k} {v} ."


def make_descriptor(objects=(), relations=(), entities=(), **extra) -> dict:
  """Descriptor (docs/data_format.md): {objects, relations, scene, text_in_image, entities} (+ extra
  keys)."""
  return {"objects": list(objects), "relations": list(relations), "scene": "grid",
          "text_in_image": [], "entities": list(entities), **extra}


def position(o: Obj, spec: WorldSpec) -> str:
  return f"{spec.rows[o.row]} {spec.cols[o.col]}"


def join_and(items: list) -> str:
  """'a' / 'a and b' / 'a , b and c'."""
  return items[0] if len(items) == 1 else " , ".join(items[:-1]) + " and " + items[-1]


def count_phrase(n: int, noun: str, plural_noun: str) -> str:
  return f"{NUMBER_WORDS[n]} {noun if n == 1 else plural_noun}"


def _attrs(o: Obj, spec: WorldSpec) -> list:
  """(key, value) in rendering order: size, texture (if it varies), colour, position."""
  out = [("size", o.size)] if len(spec.sizes) > 1 else []
  out += [("texture", o.texture)] if len(spec.textures) > 1 else []
  return out + [("colour", o.colour), ("position", position(o, spec))]


def _phrase(o: Obj, attrs: list) -> str:
  """'large red circle top left' from the chosen attributes (position goes after the noun)."""
  pre = [v for k, v in attrs if k != "position"]
  post = [v for k, v in attrs if k == "position"]
  return " ".join(pre + [o.shape] + post)


def _obj_desc(o: Obj, attrs: list) -> dict:
  return {"name": o.shape, "attributes": [v for _, v in attrs], "count": 1}


def _rel_desc(a: str, predicate: str, b: str) -> dict:
  return {"subject": a, "predicate": predicate, "object": b}


def short_caption(scene: Scene, spec: WorldSpec, rng: np.random.Generator) -> tuple:
  """Low density: colour and shape of each object, in random order."""
  objs = [scene.objects[i] for i in rng.permutation(len(scene.objects))]
  x = join_and([f"a {o.colour} {o.shape}" for o in objs])
  text = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(x=x)
  return text, make_descriptor([_obj_desc(o, [("colour", o.colour)]) for o in objs])


def enriched_caption(scene: Scene, spec: WorldSpec, rng: np.random.Generator) -> tuple:
  """All attributes, the count, positions and every pairwise relation, compactly."""
  parts = [count_phrase(len(scene.objects), "object", "objects") + " ."]
  objects, relations = [], []
  for o in scene.objects:
    attrs = _attrs(o, spec)
    parts.append(_phrase(o, attrs) + " .")
    objects.append(_obj_desc(o, attrs))
  for a, pred, b in canonical_relations(scene):
    if rng.random() < 0.5:
      a, pred, b = b, INVERSE[pred], a
    parts.append(f"{a.name} {pred} {b.name} .")
    relations.append(_rel_desc(a.name, pred, b.name))
  return " ".join(parts), make_descriptor(objects, relations)


def _entity(shape: str, kb: dict) -> dict:
  return {"name": shape, "type": "shape", "facts": [f"{k} {v}" for k, v in kb[shape].items()]}


def _shared_facts(shapes: list, kb: dict) -> list:
  """(a, key, value, b) for every pair of distinct shapes that share a fact value."""
  out = []
  for i, a in enumerate(shapes):
    for b in shapes[i + 1:]:
      out += [(a, k, v, b) for k, v in kb[a].items() if kb[b][k] == v]
  return out


def knowledge_caption(scene: Scene, spec: WorldSpec, kb: dict, rng: np.random.Generator) -> tuple:
  """Enriched caption + the hidden facts of the shapes present + facts they share."""
  text, desc = enriched_caption(scene, spec, rng)
  shapes = sorted({o.shape for o in scene.objects}, key=spec.shapes.index)
  parts = [text]
  for s in shapes:
    parts.append(f"{s} : " + " , ".join(f"{k} {v}" for k, v in kb[s].items()) + " .")
    desc["entities"].append(_entity(s, kb))
  for a, k, _, b in _shared_facts(shapes, kb):
    parts.append(f"{a} and {b} : same {k} .")
    desc["relations"].append(_rel_desc(a, f"same {k} as", b))
  return " ".join(parts), desc


def fact_document(shapes: list, kb: dict, rng: np.random.Generator) -> tuple:
  """Text-only document: every fact of `shapes` in paraphrased templates (paraphrase variety
  helps a model store facts so they can be recalled in other forms)."""
  parts, entities = [], []
  for s in shapes:
    keys = list(kb[s])
    for k in (keys[i] for i in rng.permutation(len(keys))):
      templates = FACT_TEMPLATES[k]
      parts.append(templates[rng.integers(len(templates))].format(s=s, v=kb[s][k]))
    entities.append(_entity(s, kb))
  relations = []
  for a, k, v, b in _shared_facts(shapes, kb):
    if rng.random() < 0.5:
      parts.append(SHARED_FACT_TEMPLATE.format(a=a, b=b, k=k, v=v))
      relations.append(_rel_desc(a, f"same {k} as", b))
  return " ".join(parts), make_descriptor(relations=relations, entities=entities)


def _match(a: Scene, b: Scene) -> list:
  """Aligns objects of two scenes: same shape first, most shared attributes next (greedy)."""
  rest, pairs = list(b.objects), []
  for oa in a.objects:
    cands = [ob for ob in rest if ob.shape == oa.shape] or rest
    if not cands:
      break
    ob = max(cands, key=lambda o: sum(x == y for x, y in zip(o, oa)))
    rest.remove(ob)
    pairs.append((oa, ob))
  return pairs


def _shape_relations(scene: Scene) -> set:
  """Canonical relations between shape names (left-of / above only), for unique shapes."""
  counts = {}
  for o in scene.objects:
    counts[o.shape] = counts.get(o.shape, 0) + 1
  rels = set()
  for a, pred, b in canonical_relations(scene):
    if counts[a.shape] == 1 and counts[b.shape] == 1:
      rels.add((b.shape, "left of", a.shape) if pred == "right of" else (a.shape, pred, b.shape))
  return rels


def comparison_caption(a: Scene, b: Scene, spec: WorldSpec) -> tuple:
  """Comparative text for a pair: shared content, per-image differences, relations that hold in
  only one image. Descriptor: shared objects + `comparison` {shared, differences,
  relational_knowledge} (docs/data_format.md, "Descriptor")."""
  shared, first, second, diffs, objects = [], [], [], [], []
  for oa, ob in _match(a, b):
    aa, ab = _attrs(oa, spec), _attrs(ob, spec)
    same = [kv for kv in aa if kv in ab]
    if oa.shape == ob.shape:
      shared.append(_phrase(oa, same))
      objects.append(_obj_desc(oa, same))
    if len(same) < len(aa) or oa.shape != ob.shape:
      first.append(_phrase(oa, [kv for kv in aa if kv not in same]))
      second.append(_phrase(ob, [kv for kv in ab if kv not in same]))
      for (k, va), (_, vb) in zip(aa, ab):
        if va != vb:
          diffs.append({"object": oa.shape, "attribute": k, "first": va, "second": vb})
      if oa.shape != ob.shape:
        diffs.append({"object": oa.shape, "attribute": "shape", "first": oa.shape,
                      "second": ob.shape})
  parts = []
  if shared:
    parts.append("shared : " + " , ".join(shared) + " .")
  if first:
    parts.append("first : " + " , ".join(first) + " .")
    parts.append("second : " + " , ".join(second) + " .")
  ra, rb = _shape_relations(a), _shape_relations(b)
  for label, only, in_a, in_b in (("only first", ra - rb, "yes", "no"),
                                  ("only second", rb - ra, "no", "yes")):
    if only:
      parts.append(f"{label} : " + " , ".join(" ".join(r) for r in sorted(only)) + " .")
      diffs += [{"object": s, "attribute": f"{p} {o}", "first": in_a, "second": in_b}
                for s, p, o in sorted(only)]
  comparison = {"shared": shared, "differences": diffs, "relational_knowledge": []}
  return " ".join(parts), make_descriptor(objects, comparison=comparison)
