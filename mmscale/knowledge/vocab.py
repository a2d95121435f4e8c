"""The vocabulary the offline parser and the template renderers share.

Loaded from a knowledge world's `world.json` (its `vocabulary` block) or from a vocabulary JSON
file for real data:
```
{"objects": ["dog", "car", ...], "plurals": {"person": "people"},
 "attributes": {"colour": [...], "size": [...], "material": [...], "position": ["top left", ...]},
 "post_noun": ["position"],          # attribute kinds written after the noun
 "relations": ["left of", "on top of", ...], "numbers": ["zero", "one", ...],
 "facts": {"family": [...], ...}, "scene": "street"}
```
Attribute kinds keep their order: the renderer writes attributes in kind order, which is the
order the world's enriched captions use (size, texture, colour, position).
"""
import dataclasses
import json
import os

from mmscale.errors import RecordFormatError

DEFAULT_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                   "ten")
GENERIC_NOUN = "object"
INVERSE_RELATIONS = {"left of": "right of", "right of": "left of", "above": "below",
                     "below": "above"}


def plural(noun: str) -> str:
  return noun + ("es" if noun.endswith(("s", "x", "sh", "ch")) else "s")


@dataclasses.dataclass
class Vocabulary:
  objects: list
  attributes: dict  # kind -> [word or phrase]
  relations: list
  numbers: list = dataclasses.field(default_factory=lambda: list(DEFAULT_NUMBERS))
  facts: dict = dataclasses.field(default_factory=dict)  # fact key -> values
  plurals: dict = dataclasses.field(default_factory=dict)
  post_noun: tuple = ("position",)
  scene: str = ""
  entity_type: str = "object"

  def __post_init__(self):
    self.plurals = {o: self.plurals.get(o, plural(o)) for o in self.objects + [GENERIC_NOUN]}
    self.singular = {p: s for s, p in self.plurals.items()}
    self.kind_of = {w: k for k, ws in self.attributes.items() for w in ws}
    self.fact_key_of = {v: k for k, vs in self.facts.items() for v in vs}
    self.number_value = {w: i for i, w in enumerate(self.numbers)}
    # Longest phrases first so 'top left' wins over 'top'.
    self.attribute_phrases = sorted(self.kind_of, key=lambda p: -len(p.split()))
    self.relation_phrases = sorted(self.relations, key=lambda p: -len(p.split()))
    self.kind_order = {k: i for i, k in enumerate(self.attributes)}

  def to_json(self) -> dict:
    return {"objects": self.objects, "attributes": self.attributes, "relations": self.relations,
            "numbers": self.numbers, "facts": self.facts, "plurals": self.plurals,
            "post_noun": list(self.post_noun), "scene": self.scene,
            "entity_type": self.entity_type}

  @classmethod
  def from_json(cls, d: dict) -> "Vocabulary":
    return cls(objects=list(d["objects"]), attributes={k: list(v) for k, v in
                                                       d.get("attributes", {}).items()},
               relations=list(d.get("relations", [])),
               numbers=list(d.get("numbers", DEFAULT_NUMBERS)), facts=dict(d.get("facts", {})),
               plurals=dict(d.get("plurals", {})), post_noun=tuple(d.get("post_noun",
                                                                         ("position",))),
               scene=d.get("scene", ""), entity_type=d.get("entity_type", "object"))


def from_world(world: dict) -> Vocabulary:
  """Vocabulary of a knowledge world (world.json): shapes, colour/size/texture words, 'row col'
  positions, the four relations and the hidden fact values."""
  v = world["vocabulary"]
  positions = [f"{r} {c}" for r in v["rows"] for c in v["cols"]]
  return Vocabulary(
      objects=list(v["shapes"]),
      attributes={"size": v["sizes"], "texture": v["textures"], "colour": v["colours"],
                  "position": positions},
      relations=list(v["relations"]), numbers=list(DEFAULT_NUMBERS), facts=dict(v["facts"]),
      scene="grid", entity_type="shape")


def load_vocabulary(path: str) -> Vocabulary:
  """From a world.json, a world directory, or a vocabulary JSON file."""
  if os.path.isdir(path):
    path = os.path.join(path, "world.json")
  try:
    with open(path) as f:
      d = json.load(f)
  except (OSError, ValueError) as e:
    raise RecordFormatError(f"{path}: cannot read vocabulary ({e})") from e
  if "vocabulary" in d and "shapes" in d["vocabulary"]:
    return from_world(d)
  if "objects" not in d:
    raise RecordFormatError(f"{path}: a vocabulary needs 'objects' (or be a world.json)")
  return Vocabulary.from_json(d)


def find_world_file(start: str) -> str | None:
  """world.json in `start` or one of its parents (a world's arm dirs sit two levels below)."""
  d = os.path.abspath(start)
  for _ in range(4):
    if os.path.isfile(os.path.join(d, "world.json")):
      return os.path.join(d, "world.json")
    d = os.path.dirname(d)
  return None


def load_kb(path: str | None) -> dict:
  """Knowledge base JSONL ({"name", "type", "facts": [...]}) -> {name: entity}."""
  if not path:
    return {}
  kb = {}
  with open(path) as f:
    for n, line in enumerate(f):
      if line.strip():
        try:
          e = json.loads(line)
          kb[e["name"]] = {"name": e["name"], "type": e.get("type", ""),
                           "facts": list(e.get("facts", []))}
        except (ValueError, KeyError) as err:
          raise RecordFormatError(f"{path} line {n + 1}: bad knowledge-base entry ({err})") from err
  return kb
