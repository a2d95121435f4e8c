"""Data arms of the knowledge world: one record generator per arm, all over the same scenes.

`ARMS[name](data, rng)` yields records (docs/data_format.md). Every arm sees the same scenes and
images, so arms differ only in their text, which is what the Caption First, VQA Second
comparisons (docs/scaling.md) vary.
Each arm draws from its own random stream, so adding or changing one arm leaves the others
byte-identical.
"""
import dataclasses

import numpy as np

from mmscale.data import world_text
from mmscale.data.world_scenes import Scene, pair_scenes

IMAGE = {"image": 0}


@dataclasses.dataclass
class WorldData:
  """Scenes with their encoded images and sampled QAs; the input of every arm."""
  spec: object
  kb: dict
  fact_shapes: list
  scenes: list
  pngs: list
  qas: list  # per scene: list of QA dicts (world_qa), shared by `vqa` and `vqa_as_caption`
  num_text_docs: int


def _text(text: str, loss: bool = True) -> dict:
  return {"text": text, "loss": loss}


def _meta(arm: str, scenes: list, **extra) -> dict:
  ids = [s.id for s in scenes]
  key = {"scene_id": ids[0]} if len(ids) == 1 else {"scene_ids": ids}
  return {"arm": arm, **key, "scenes": [s.compact() for s in scenes], **extra}


def merge_descriptors(descs: list, **extra) -> dict:
  """Concatenates objects/relations; entities deduplicated by name (facts merged)."""
  out = world_text.make_descriptor(**extra)
  entities = {}
  for d in descs:
    out["objects"] += d["objects"]
    out["relations"] += d["relations"]
    for e in d["entities"]:
      ent = entities.setdefault(e["name"], {**e, "facts": []})
      ent["facts"] += [f for f in e["facts"] if f not in ent["facts"]]
  out["entities"] = list(entities.values())
  return out


def _per_scene(arm: str, render):
  """Arm of one caption record per scene: `render(index, data, rng) -> (text, descriptor)`."""
  def gen(data: WorldData, rng: np.random.Generator):
    for i, (scene, png) in enumerate(zip(data.scenes, data.pngs)):
      text, desc = render(i, data, rng)
      yield {"id": f"{arm}-{scene.id}", "kind": "caption", "images": [png],
             "segments": [IMAGE, _text(text)], "descriptor": desc, "meta": _meta(arm, [scene])}
  return gen


def vqa_record(rid: str, scene: Scene, png: bytes, qa: dict, arm: str, **meta) -> dict:
  """[image, question (no loss), answer (loss)]: the prefix-LM VQA example."""
  return {"id": rid, "kind": "vqa", "images": [png],
          "segments": [IMAGE, _text(qa["question"], False), _text(qa["answer"])],
          "descriptor": qa["descriptor"],
          "meta": _meta(arm, [scene], qtype=qa["qtype"], qform=qa["form"], answer=qa["answer"],
                        choices=qa["choices"], **meta)}


def vqa_arm(data: WorldData, rng: np.random.Generator):
  for scene, png, qas in zip(data.scenes, data.pngs, data.qas):
    for k, qa in enumerate(qas):
      yield vqa_record(f"vqa-{scene.id}-{k}", scene, png, qa, "vqa")


def _vqa_as_caption(i, data, rng):
  """The training VQA of the scene rewritten as declarative sentences (same content)."""
  qas = data.qas[i]
  return (" ".join(qa["statement"] for qa in qas),
          merge_descriptors([qa["descriptor"] for qa in qas]))


def pairs_arm(data: WorldData, rng: np.random.Generator):
  for i, j, sim in pair_scenes(data.scenes):
    a, b = data.scenes[i], data.scenes[j]
    text, desc = world_text.comparison_caption(a, b, data.spec)
    desc["similarity"] = round(sim, 4)
    yield {"id": f"pairs-{a.id}-{b.id}", "kind": "pair", "images": [data.pngs[i], data.pngs[j]],
           "segments": [{"image": 0}, {"image": 1}, _text(text)], "descriptor": desc,
           "meta": _meta("pairs", [a, b], similarity=round(sim, 4))}


def interleaved_arm(data: WorldData, rng: np.random.Generator):
  """Documents of 2-4 images, each followed by its short caption (few-shot style context)."""
  order = rng.permutation(len(data.scenes))
  start, doc = 0, 0
  while start < len(order):
    idx = order[start:start + int(rng.integers(2, 5))]
    start += len(idx)
    segments, descs = [], []
    for k, i in enumerate(idx):
      text, desc = world_text.short_caption(data.scenes[i], data.spec, rng)
      segments += [{"image": k}, _text(text)]
      for o in desc["objects"]:
        o["image"] = k
      descs.append(desc)
    scenes = [data.scenes[i] for i in idx]
    yield {"id": f"interleaved-{doc:06d}", "kind": "interleaved",
           "images": [data.pngs[i] for i in idx], "segments": segments,
           "descriptor": merge_descriptors(descs), "meta": _meta("interleaved", scenes)}
    doc += 1


def text_arm(data: WorldData, rng: np.random.Generator):
  """Text-only fact documents about 1-3 shapes each."""
  shapes = data.spec.shapes
  for d in range(data.num_text_docs):
    k = int(rng.integers(1, min(3, len(shapes)) + 1))
    chosen = [shapes[i] for i in rng.choice(len(shapes), size=k, replace=False)]
    text, desc = world_text.fact_document(chosen, data.kb, rng)
    yield {"id": f"text-{d:06d}", "kind": "text", "images": [], "segments": [_text(text)],
           "descriptor": desc, "meta": {"arm": "text", "shapes": chosen}}


ARMS = {
    "caption": _per_scene(
        "caption", lambda i, d, rng: world_text.short_caption(d.scenes[i], d.spec, rng)),
    "vqa": vqa_arm,
    "vqa_as_caption": _per_scene("vqa_as_caption", _vqa_as_caption),
    "enriched": _per_scene(
        "enriched", lambda i, d, rng: world_text.enriched_caption(d.scenes[i], d.spec, rng)),
    "pairs": pairs_arm,
    "knowledge": _per_scene(
        "knowledge",
        lambda i, d, rng: world_text.knowledge_caption(d.scenes[i], d.spec, d.kb, rng)),
    "interleaved": interleaved_arm,
    "text": text_arm,
}
