"""The knowledge world's specification: its vocabulary of shapes, colours, sizes, grid and facts.

Defaults are sized so that a tiny model on a CPU can learn every question type: images are 48x48
on a 3x3 grid of 16 px cells (with ViT patch 16 each object is exactly one image token), shapes
and colours are few and strongly distinct, 1-3 objects per scene, and every word of the world is
one lowercase token of a word-level vocabulary.
"""
import dataclasses

from mmscale.errors import ConfigError

COLOUR_RGB = {
    "red": (225, 45, 45), "green": (40, 190, 70), "blue": (55, 95, 245),
    "yellow": (240, 215, 40), "purple": (165, 65, 215), "white": (235, 235, 235),
    "orange": (245, 140, 30), "cyan": (40, 210, 220), "pink": (245, 120, 180)}
BACKGROUND_RGB = (24, 24, 28)
# Radius as a fraction of the cell side; a cell of 16 px gives 5.1 and 7.4 px.
SIZE_RADIUS = {"small": 0.32, "large": 0.46}
TEXTURES = ("plain", "striped")
ALL_SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
# Position words per grid side; column words avoid "of" so "left of" stays a relation.
ROW_WORDS = {2: ("top", "bottom"), 3: ("top", "middle", "bottom"),
             4: ("top", "upper", "lower", "bottom")}
COL_WORDS = {2: ("left", "right"), 3: ("left", "center", "right"),
             4: ("left", "midleft", "midright", "right")}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RELATIONS = ("left of", "right of", "above", "below")
RELATION_FORMS = ("yesno", "which")
FACT_KEYS = ("family", "habitat", "weight")


# Named worlds: WorldSpec fields that differ from the defaults (`tools/build_world.py --preset`).
# `relations`: the world on which every question type, relations included, is learnable by the
# VQA arm at size s (relation accuracy >= 0.8 by step 1,500 of a 3,000-step run in 3 seeds;
# docs/results/learnable_relations.md, Lever 3): 4 shapes, 4 colours, one size, always two
# objects, relations asked as "which" with grounding questions. Two of its four shapes have
# knowledge questions in the VQA arm, so two are held out.
WORLD_PRESETS = {
    "default": {},
    "relations": dict(shapes=("circle", "square", "triangle", "cross"),
                      colours=("red", "green", "blue", "yellow"), sizes=("large",),
                      min_objects=2, max_objects=2, num_vqa_fact_shapes=2, grounding=True,
                      relation_form="which"),
}


def plural(noun: str) -> str:
  """English plural of a shape noun ("cross" -> "crosses")."""
  return noun + ("es" if noun.endswith(("s", "x", "sh", "ch")) else "s")


@dataclasses.dataclass(frozen=True)
class WorldSpec:
  """Everything that defines a world; `to_json()` is stored in world.json.

  `facts` maps each hidden fact key to its possible values (a small value set keeps knowledge
  learnable; values are made-up words so they never collide with visible attributes).
  `num_vqa_fact_shapes` shapes have knowledge questions in the training VQA arm (it teaches the
  answer format); the other shapes' facts appear only in knowledge captions and fact documents,
  so evaluation can separate "format taught" from "knowledge transferred".
  `grounding` adds the question type `grounding` ("where is the red cross ?" -> "top left") to
  the training VQA arm and the eval set: a direct target for where each object is, which
  relation questions (a comparison of two positions) do not give on their own.
  `relation_form` is how relation questions are asked: "yesno" ("is the red circle left of the
  blue square ?" -> yes / no; the answer is drawn first and a predicate fitted to it, so it is
  XOR-like in the two cells) or "which" ("where is the red circle relative to the blue square ?"
  -> "above and left of", one of 8 answers that is a function of the two cells). Captions and
  fact documents do not depend on it.
  """
  image_size: int = 48
  grid: int = 3
  shapes: tuple = ALL_SHAPES
  colours: tuple = ("red", "green", "blue", "yellow", "purple", "white")
  sizes: tuple = ("small", "large")
  textures: tuple = ("plain",)
  min_objects: int = 1
  max_objects: int = 3
  facts: tuple = (("family", ("zorb", "plim", "kell")),
                  ("habitat", ("forest", "desert", "ocean")),
                  ("weight", ("light", "heavy")))
  num_vqa_fact_shapes: int = 3
  vqa_per_scene: int = 3
  eval_per_type: int = 3
  colour_jitter: int = 12
  position_jitter: int = 1
  grounding: bool = False
  relation_form: str = "yesno"

  @property
  def cell(self) -> int:
    return self.image_size // self.grid

  @property
  def rows(self) -> tuple:
    return ROW_WORDS[self.grid]

  @property
  def cols(self) -> tuple:
    return COL_WORDS[self.grid]

  @property
  def fact_values(self) -> dict:
    return dict(self.facts)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d["facts"] = {k: list(v) for k, v in self.facts}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

  @classmethod
  def from_json(cls, d: dict) -> "WorldSpec":
    d = dict(d)
    if "facts" in d:
      d["facts"] = tuple((k, tuple(v)) for k, v in d["facts"].items())
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _check_subset(field: str, values: tuple, allowed, minimum: int = 1) -> None:
  unknown = [v for v in values if v not in allowed]
  if unknown:
    raise ConfigError(field, f"unknown values {unknown}; choose from {sorted(allowed)}")
  if len(set(values)) != len(values) or len(values) < minimum:
    raise ConfigError(field, f"needs at least {minimum} distinct values, got {list(values)}")


def validate_spec(spec: WorldSpec) -> WorldSpec:
  """Raises ConfigError naming the field of the first inconsistency; returns the spec."""
  if spec.grid not in ROW_WORDS:
    raise ConfigError("grid", f"must be one of {sorted(ROW_WORDS)}, got {spec.grid}")
  if spec.image_size % spec.grid or spec.cell < 8:
    raise ConfigError("image_size", f"must be a multiple of grid={spec.grid} with cells of at "
                      f"least 8 px, got {spec.image_size}")
  _check_subset("shapes", spec.shapes, ALL_SHAPES, 2)
  _check_subset("colours", spec.colours, COLOUR_RGB, 2)
  _check_subset("sizes", spec.sizes, SIZE_RADIUS)
  _check_subset("textures", spec.textures, TEXTURES)
  if not 1 <= spec.min_objects <= spec.max_objects <= min(spec.grid ** 2, len(NUMBER_WORDS) - 1):
    raise ConfigError("max_objects", f"need 1 <= min_objects <= max_objects <= "
                      f"{min(spec.grid ** 2, 9)}, got {spec.min_objects}..{spec.max_objects}")
  if spec.max_objects > len(spec.shapes) * len(spec.colours):
    raise ConfigError("max_objects", "exceeds the number of distinct (colour, shape) objects")
  keys = [k for k, _ in spec.facts]
  _check_subset("facts", tuple(keys), FACT_KEYS)
  for key, values in spec.facts:
    if len(values) < 2 or len(set(values)) != len(values):
      raise ConfigError(f"facts.{key}", f"needs >= 2 distinct values, got {list(values)}")
  words = [w for _, vs in spec.facts for w in vs] + list(spec.shapes) + list(spec.colours)
  if any(not w.isalpha() or w != w.lower() for w in words):
    raise ConfigError("facts", "every world word must be one lowercase alphabetic token")
  visible = set(spec.shapes) | set(spec.colours) | set(spec.sizes) | set(spec.textures)
  visible |= set(spec.rows) | set(spec.cols) | set(NUMBER_WORDS) | {"yes", "no"}
  clash = sorted({w for _, vs in spec.facts for w in vs} & visible)
  if clash:
    raise ConfigError("facts", f"fact values {clash} collide with visible-attribute words; "
                      "an answer must name one thing")
  if not 0 <= spec.num_vqa_fact_shapes <= len(spec.shapes):
    raise ConfigError("num_vqa_fact_shapes", f"must be in 0..{len(spec.shapes)}")
  if spec.relation_form not in RELATION_FORMS:
    raise ConfigError("relation_form", f"must be one of {list(RELATION_FORMS)}, "
                      f"got {spec.relation_form!r}")
  if spec.vqa_per_scene < 1 or spec.eval_per_type < 1:
    raise ConfigError("vqa_per_scene", "vqa_per_scene and eval_per_type must be >= 1")
  return spec
