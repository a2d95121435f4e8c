"""Scenes of the knowledge world: sampling, spatial relations, the hidden knowledge base, pairing.

A scene is 1..max_objects objects in distinct grid cells; no two objects share (colour, shape), so
"the red circle" always names exactly one object and every question has one true answer.
Relations come from grid cells only (column order = left/right, row order = above/below), so they
are exact and aligned with the ViT patch grid.
"""
import collections
from typing import NamedTuple

import numpy as np

from mmscale.data.world_spec import WorldSpec


class Obj(NamedTuple):
  shape: str
  colour: str
  size: str
  texture: str
  row: int
  col: int

  @property
  def name(self) -> str:
    """Referring expression, unique inside a scene."""
    return f"{self.colour} {self.shape}"


class Scene(NamedTuple):
  id: str
  objects: tuple  # tuple[Obj, ...] in reading order (row, then column)

  def compact(self) -> list:
    """Ground truth as plain lists for record meta: [[shape, colour, size, texture, row, col]]."""
    return [list(o) for o in self.objects]


def sample_scene(spec: WorldSpec, rng: np.random.Generator, scene_id: str) -> Scene:
  n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
  cells = rng.choice(spec.grid * spec.grid, size=n, replace=False)
  used, objs = set(), []
  for cell in cells:
    while True:
      shape = spec.shapes[rng.integers(len(spec.shapes))]
      colour = spec.colours[rng.integers(len(spec.colours))]
      if (shape, colour) not in used:
        break
    used.add((shape, colour))
    size = spec.sizes[rng.integers(len(spec.sizes))]
    texture = spec.textures[rng.integers(len(spec.textures))]
    objs.append(Obj(shape, colour, size, texture, int(cell) // spec.grid, int(cell) % spec.grid))
  return Scene(scene_id, tuple(sorted(objs, key=lambda o: (o.row, o.col))))


def sample_scenes(spec: WorldSpec, num: int, rng: np.random.Generator, prefix: str) -> list:
  return [sample_scene(spec, rng, f"{prefix}{i:06d}") for i in range(num)]


def holds(a: Obj, predicate: str, b: Obj) -> bool:
  """Whether `a predicate b` is true from grid cells (strict: same column is neither side)."""
  return {"left of": a.col < b.col, "right of": a.col > b.col,
          "above": a.row < b.row, "below": a.row > b.row}[predicate]


def canonical_relations(scene: Scene) -> list:
  """Every true (a, predicate, b) for a before b in reading order, one horizontal and one vertical
  at most per pair; the reverse relations are implied."""
  rels = []
  objs = scene.objects
  for i, a in enumerate(objs):
    for b in objs[i + 1:]:
      if a.col != b.col:
        rels.append((a, "left of", b) if a.col < b.col else (a, "right of", b))
      if a.row != b.row:
        rels.append((a, "above", b))
  return rels


def sample_kb(spec: WorldSpec, rng: np.random.Generator) -> dict:
  """Hidden facts per shape, {shape: {key: value}}; each value is given to a balanced share of
  the shapes (a permutation dealt round-robin) so no fact value is a majority guess."""
  kb = {s: {} for s in spec.shapes}
  for key, values in spec.facts:
    order = rng.permutation(len(spec.shapes))
    for rank, si in enumerate(order):
      kb[spec.shapes[si]][key] = values[rank % len(values)]
  return kb


def vqa_fact_shapes(spec: WorldSpec, rng: np.random.Generator) -> list:
  """The shapes whose knowledge questions appear in the training VQA arm (see WorldSpec)."""
  order = rng.permutation(len(spec.shapes))[:spec.num_vqa_fact_shapes]
  return sorted(spec.shapes[i] for i in order)


def _feature_names(o: Obj) -> tuple:
  cell = f"{o.row}{o.col}"
  return (f"s:{o.shape}", f"c:{o.colour}", f"z:{o.size}", f"t:{o.texture}", f"p:{cell}",
          f"sc:{o.shape}{o.colour}", f"sz:{o.shape}{o.size}", f"sp:{o.shape}{cell}")


def descriptor_counts(scenes: list) -> np.ndarray:
  """int64[N, D] bag of descriptor features per scene (the 'descriptor embedding' that pairing
  compares by cosine similarity)."""
  vocab: dict = {}
  rows = []
  for sc in scenes:
    rows.append([vocab.setdefault(f, len(vocab)) for o in sc.objects for f in _feature_names(o)])
  counts = np.zeros((len(scenes), max(1, len(vocab))), np.int64)
  for i, idx in enumerate(rows):
    np.add.at(counts[i], idx, 1)
  return counts


def cosine_similarities(counts: np.ndarray) -> np.ndarray:
  """float64[N, N] cosine similarities of int64[N, D] count rows, identical on every CPU.

  Why not a float matmul of normalised rows: many scene pairs tie exactly, and a BLAS float dot
  rounds differently from one CPU (or library build) to the next, so `argmax` broke those ties
  differently and the same seed built a different pairs arm on another machine. Integer dot
  products are exact, and the norms' square roots and the division are correctly rounded.
  """
  dots = counts @ counts.T  # exact: integer arithmetic, no BLAS
  norms = np.sqrt(np.maximum(np.einsum("nd,nd->n", counts, counts), 1).astype(np.float64))
  return dots / np.multiply.outer(norms, norms)


def pair_scenes(scenes: list, band: tuple = (0.6, 0.9)) -> list:
  """Pairs each scene with a descriptor-similar partner: [(i, j, similarity)].

  Coarse alignment: the partner has the same multiset of shapes (the same 'category'); fine
  contrast: the most similar partner inside `band` (else the most similar one that is not
  identical), so at least one colour, size or position differs. Scenes whose shape multiset is
  unique get no partner.
  """
  counts = descriptor_counts(scenes)
  buckets = collections.defaultdict(list)
  for i, sc in enumerate(scenes):
    buckets[tuple(sorted(o.shape for o in sc.objects))].append(i)
  pairs = []
  lo, hi = band
  for idx in buckets.values():
    if len(idx) < 2:
      continue
    idx = np.asarray(idx)
    sims = cosine_similarities(counts[idx])
    np.fill_diagonal(sims, -1.0)
    sims[sims > 0.999] = -1.0  # identical descriptors: nothing to contrast
    in_band = np.where((sims >= lo) & (sims <= hi), sims, -1.0)
    for r, i in enumerate(idx):
      row = in_band[r] if in_band[r].max() >= 0 else sims[r]
      c = int(row.argmax())
      if row[c] >= 0:
        pairs.append((int(i), int(idx[c]), float(sims[r, c])))
  pairs.sort()
  return pairs
