"""Templated questions about a scene, with single-word answers and declarative rewrites.

Each question type is a small generator in `QA_GENERATORS` (a registry, so a new type is one
function). A QA is `{"qtype", "form", "question", "answer", "statement", "choices", "statements",
"statement_values", "statement_answer", "shape", "descriptor"}`: `answer` is one word (two for a
grid cell: "top left") so exact match is meaningful, `choices` is the answer set of the template
(the candidates of ranked-choice evaluation: `mmscale/eval/choice.py`), `statement` is the same
content as a declarative sentence (the `vqa_as_caption` arm), `statements` are the caption-form
candidates of the statement probe (the true one and its false counterparts: the other colours,
numbers, fact values, or the relation predicates that do not hold), `statement_values` the word
each of them varies in and `statement_answer` the true one's; `shape` is the shape a knowledge
question is about (None otherwise) and `descriptor` holds what the QA states.
"""
import collections

import numpy as np

from mmscale.data.world_scenes import Scene, holds
from mmscale.data.world_spec import NUMBER_WORDS, RELATIONS, WorldSpec, plural
from mmscale.data.world_text import make_descriptor

QTYPES = ("attribute", "count", "relation", "knowledge")
# Asked only when `WorldSpec.grounding` is on: "where is the red cross ?" -> "top left".
GROUNDING = "grounding"
KNOWLEDGE_TEMPLATES = {
    "family": ("what family is the {r} ?", "the {r} belongs to family {v} ."),
    "habitat": ("where does the {r} live ?", "the {r} lives in the {v} ."),
    "weight": ("how heavy is the {r} ?", "the {r} is {v} ."),
}


def _qa(qtype, form, question, answer, statement, choices, descriptor, shape=None, *,
        probe) -> dict:
  """`probe`: (template, its values, the true value) of the statement probe; the template is a
  string with one `{}` or a function of the value (counts: "there is one" / "there are two")."""
  template, values, true = probe
  statements = [template(v) if callable(template) else template.format(v) for v in values]
  return {"qtype": qtype, "form": form, "question": question, "answer": answer,
          "statement": statement, "choices": list(choices), "shape": shape,
          "descriptor": descriptor, "statements": statements,
          "statement_values": list(values), "statement_answer": true}


def _obj(name: str, attributes: list, count: int = 1) -> dict:
  return {"name": name, "attributes": attributes, "count": count}


def _pick(rng: np.random.Generator, items):
  return items[int(rng.integers(len(items)))]


def attribute_qa(scene: Scene, spec: WorldSpec, kb: dict, rng, fact_shapes) -> dict | None:
  """Colour of a unique shape, shape of a unique colour, size (and texture when it varies)."""
  shapes = collections.Counter(o.shape for o in scene.objects)
  colours = collections.Counter(o.colour for o in scene.objects)
  forms = {"colour": [o for o in scene.objects if shapes[o.shape] == 1],
           "shape": [o for o in scene.objects if colours[o.colour] == 1]}
  if len(spec.sizes) > 1:
    forms["size"] = list(scene.objects)
  if len(spec.textures) > 1:
    forms["texture"] = list(scene.objects)
  form = _pick(rng, [f for f, objs in forms.items() if objs])
  o = _pick(rng, forms[form])
  if form == "colour":
    return _qa("attribute", form, f"what colour is the {o.shape} ?", o.colour,
               f"the {o.shape} is {o.colour} .", spec.colours,
               make_descriptor([_obj(o.shape, [o.colour])]),
               probe=(f"the {o.shape} is {{}} .", spec.colours, o.colour))
  if form == "shape":
    return _qa("attribute", form, f"what shape is the {o.colour} object ?", o.shape,
               f"the {o.colour} object is a {o.shape} .", spec.shapes,
               make_descriptor([_obj(o.shape, [o.colour])]),
               probe=(f"the {o.colour} object is a {{}} .", spec.shapes, o.shape))
  value, choices = (o.size, spec.sizes) if form == "size" else (o.texture, spec.textures)
  return _qa("attribute", form, f"what {form} is the {o.name} ?", value,
             f"the {o.name} is {value} .", choices,
             make_descriptor([_obj(o.shape, [o.colour, value])]),
             probe=(f"the {o.name} is {{}} .", choices, value))


def _there_are(n: int, noun: str, nouns: str) -> str:
  return f"there is one {noun} ." if n == 1 else f"there are {NUMBER_WORDS[n]} {nouns} ."


def _count_statement(noun: str, nouns: str):
  return lambda word: _there_are(NUMBER_WORDS.index(word), noun, nouns)


def count_qa(scene: Scene, spec: WorldSpec, kb: dict, rng, fact_shapes) -> dict | None:
  """Total objects, objects of a colour, or objects of a shape (present or absent, 50/50)."""
  form = _pick(rng, ("total", "colour", "shape"))
  choices = NUMBER_WORDS[:spec.max_objects + 1]
  n = len(scene.objects)
  if form == "total":
    return _qa("count", form, "how many objects are there ?", NUMBER_WORDS[n],
               _there_are(n, "object", "objects"), choices[1:],
               make_descriptor([_obj("object", [], n)]),
               probe=(_count_statement("object", "objects"), choices[1:], NUMBER_WORDS[n]))
  key = "colour" if form == "colour" else "shape"
  present = [getattr(o, key) for o in scene.objects]
  value = _pick(rng, present) if rng.random() < 0.5 else _pick(rng, getattr(spec, key + "s"))
  n = present.count(value)
  if form == "colour":
    noun, nouns, obj = f"{value} object", f"{value} objects", _obj("object", [value], n)
  else:
    noun, nouns, obj = value, plural(value), _obj(value, [], n)
  return _qa("count", form, f"how many {nouns} are there ?", NUMBER_WORDS[n],
             _there_are(n, noun, nouns), choices, make_descriptor([obj]),
             probe=(_count_statement(noun, nouns), choices, NUMBER_WORDS[n]))


def relation_yesno_qa(a, b, rng) -> dict:
  """Yes/no on left of / right of / above / below between two objects; answers balanced. The
  answer is drawn first, then a predicate that fits it, so neither cell alone predicts it."""
  true = [p for p in RELATIONS if holds(a, p, b)]
  false = [p for p in RELATIONS if p not in true]
  yes = bool(true) and (not false or rng.random() < 0.5)
  pred = _pick(rng, true if yes else false)
  neg = "" if yes else "not "
  rel = {"subject": a.name, "predicate": neg + pred, "object": b.name}
  # Statement probe: a predicate that holds (the asked one when it does) against those that do
  # not, so a model that knows where both objects are can show it without the yes/no format.
  true_pred = pred if yes else true[0]
  values = [p for p in RELATIONS if p == true_pred or p in false]
  return _qa("relation", "yesno", f"is the {a.name} {pred} the {b.name} ?", "yes" if yes else "no",
             f"the {a.name} is {neg}{pred} the {b.name} .", ("yes", "no"),
             make_descriptor(relations=[rel]),
             probe=(f"the {a.name} is {{}} the {b.name} .", values, true_pred))


def relation_which_qa(a, b, rng) -> dict:
  """Which relation holds: "where is the red circle relative to the blue square ?" -> "left of"
  (same row), "above" (same column) or "above and left of" (both differ). The answer is a
  deterministic function of the two cells, so each object's cell alone narrows it (no XOR)."""
  answer = relation_words(a, b)
  rel = {"subject": a.name, "predicate": answer, "object": b.name}
  return _qa("relation", "which", f"where is the {a.name} relative to the {b.name} ?", answer,
             f"the {a.name} is {answer} the {b.name} .", WHICH_ANSWERS,
             make_descriptor(relations=[rel]),
             probe=(f"the {a.name} is {{}} the {b.name} .", WHICH_ANSWERS, answer))


# The answer set of `relation_which_qa`: one relation, or a vertical and a horizontal one.
WHICH_ANSWERS = ("left of", "right of", "above", "below", "above and left of",
                 "above and right of", "below and left of", "below and right of")


def relation_words(a, b) -> str:
  """The relation of `a` to `b` in WHICH_ANSWERS from their cells (they never share one)."""
  vertical = [p for p in ("above", "below") if holds(a, p, b)]
  horizontal = [p for p in ("left of", "right of") if holds(a, p, b)]
  return " and ".join(vertical + horizontal)


# `WorldSpec.relation_form` -> the generator of one relation question about objects a, b.
RELATION_FORMS = {"yesno": relation_yesno_qa, "which": relation_which_qa}


def relation_qa(scene: Scene, spec: WorldSpec, kb: dict, rng, fact_shapes) -> dict | None:
  """A relation between two distinct objects, in the form `spec.relation_form` names."""
  if len(scene.objects) < 2:
    return None
  i, j = rng.choice(len(scene.objects), size=2, replace=False)
  return RELATION_FORMS[spec.relation_form](
      scene.objects[i], scene.objects[j], rng)


def knowledge_qa(scene: Scene, spec: WorldSpec, kb: dict, rng, fact_shapes) -> dict | None:
  """A hidden fact of a shape: grounded ('the red object', the shape must be seen) or ungrounded
  ('the cross', answerable from memory alone). `fact_shapes` limits the shapes asked about."""
  allowed = list(fact_shapes) if fact_shapes is not None else list(spec.shapes)
  if not allowed:
    return None
  colours = collections.Counter(o.colour for o in scene.objects)
  grounded = [o for o in scene.objects if colours[o.colour] == 1 and o.shape in allowed]
  key = _pick(rng, [k for k, _ in spec.facts])
  if grounded and rng.random() < 0.5:
    o = _pick(rng, grounded)
    form, ref, shape = "grounded", f"{o.colour} object", o.shape
  else:
    shape = _pick(rng, allowed)
    form, ref = "ungrounded", shape
  question, statement = KNOWLEDGE_TEMPLATES[key]
  value = kb[shape][key]
  objects = [_obj(shape, [ref.split()[0]])] if form == "grounded" else []
  entity = {"name": shape, "type": "shape", "facts": [f"{key} {value}"]}
  return _qa("knowledge", f"{form}_{key}", question.format(r=ref), value,
             statement.format(r=ref, v=value), spec.fact_values[key],
             make_descriptor(objects, entities=[entity]), shape,
             probe=(statement.format(r=ref, v="{}"), spec.fact_values[key], value))


def cell_words(spec: WorldSpec) -> list:
  """Every grid cell's answer, row word then column word ("top left"), in reading order."""
  return [f"{r} {c}" for r in spec.rows for c in spec.cols]


def grounding_qa(scene: Scene, spec: WorldSpec, kb: dict, rng, fact_shapes) -> dict | None:
  """Where an object is: "where is the red cross ?" -> "top left" (its grid cell). Relations
  compare two objects' cells; asking for one cell gives the position signal a direct target."""
  o = _pick(rng, scene.objects)
  cell = f"{spec.rows[o.row]} {spec.cols[o.col]}"
  return _qa(GROUNDING, "where", f"where is the {o.name} ?", cell,
             f"the {o.name} is at the {cell} .", cell_words(spec),
             make_descriptor([_obj(o.shape, [o.colour, cell])]),
             probe=(f"the {o.name} is at the {{}} .", cell_words(spec), cell))


QA_GENERATORS = {"attribute": attribute_qa, "count": count_qa, "relation": relation_qa,
                 "knowledge": knowledge_qa, GROUNDING: grounding_qa}


def question_types(spec: WorldSpec) -> tuple:
  """The question types a world asks: QTYPES, and `grounding` when the spec turns it on."""
  return QTYPES + ((GROUNDING,) if getattr(spec, "grounding", False) else ())


def train_qas(scene: Scene, spec: WorldSpec, kb: dict, rng, fact_shapes) -> list:
  """Up to `spec.vqa_per_scene` QAs of distinct, randomly ordered question types."""
  out = []
  qtypes = question_types(spec)
  for qt in (qtypes[i] for i in rng.permutation(len(qtypes))):
    qa = QA_GENERATORS[qt](scene, spec, kb, rng, fact_shapes)
    if qa is not None:
      out.append(qa)
    if len(out) == spec.vqa_per_scene:
      break
  return out


def eval_qas(scene: Scene, spec: WorldSpec, kb: dict, rng) -> list:
  """Up to `spec.eval_per_type` distinct questions of every type about any shape."""
  out = []
  for qt in question_types(spec):
    seen = set()
    for _ in range(4 * spec.eval_per_type):
      qa = QA_GENERATORS[qt](scene, spec, kb, rng, None)
      if qa is None:
        break
      if qa["question"] not in seen:
        seen.add(qa["question"])
        out.append(qa)
      if len(seen) == spec.eval_per_type:
        break
  return out
