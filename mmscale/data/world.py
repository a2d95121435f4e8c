"""The knowledge world: a procedural multimodal dataset whose ground truth is known exactly.

`build_world(out_dir, num_scenes=..., seed=...)` samples scenes and a hidden knowledge base,
renders the images once, writes every data arm as a record directory over the same scenes
(`arms/<arm>/`), a held-out evaluation set (`eval/vqa/`, `eval/caption/`), `world.json`,
`kb.jsonl`, `corpus.txt` and a word-level `tokenizer.model` (layout: docs/data_format.md).

Determinism: every random decision draws from `np.random.default_rng([seed, stream])` with a
stream per purpose (kb, train scenes, eval scenes, rendering, QA, one per arm), so a seed fixes
the world, eval scenes never overlap the training stream, and arms are independent of each other.
"""
import json
import os
import time
import zlib

import numpy as np

from mmscale.data import records, tokenizer, world_arms, world_qa, world_render, world_scenes
from mmscale.data import world_text
from mmscale.data.world_spec import (COLOUR_RGB, NUMBER_WORDS, RELATIONS, WorldSpec,
                                     validate_spec)
from mmscale.errors import RecordFormatError

WORLD_FORMAT = "mmscale.world"
WORLD_VERSION = 1
SOURCE = "knowledge_world"
ARM_KINDS = {"caption": "caption", "vqa": "vqa", "vqa_as_caption": "caption",
             "enriched": "caption", "pairs": "pair", "knowledge": "caption",
             "interleaved": "interleaved", "text": "text"}


def stream(seed: int, name: str) -> np.random.Generator:
  """Independent generator for one purpose of one world."""
  return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def render_all(scenes: list, spec: WorldSpec, rng: np.random.Generator) -> list:
  return [world_render.encode_png(world_render.render_scene(s, spec, rng)) for s in scenes]


def _tee_text(recs, corpus):
  """Passes records through, writing each record's text (one line per record) to `corpus`."""
  for rec in recs:
    corpus.write(" ".join(s["text"] for s in rec["segments"] if "text" in s) + "\n")
    yield rec


def _eval_records(scenes, pngs, qas, fact_shapes):
  for scene, png, scene_qas in zip(scenes, pngs, qas):
    for k, qa in enumerate(scene_qas):
      extra = {k: qa[k] for k in ("statements", "statement_values", "statement_answer")}
      if qa["qtype"] == "knowledge":
        extra.update(shape=qa["shape"], taught=qa["shape"] in fact_shapes)
      yield world_arms.vqa_record(f"eval-{scene.id}-{k}", scene, png, qa, "eval", **extra)


def _eval_captions(scenes, pngs, spec, rng):
  for scene, png in zip(scenes, pngs):
    text, desc = world_text.short_caption(scene, spec, rng)
    enriched, _ = world_text.enriched_caption(scene, spec, rng)
    yield {"id": f"evalcap-{scene.id}", "kind": "caption", "images": [png],
           "segments": [world_arms.IMAGE, {"text": text, "loss": True}], "descriptor": desc,
           "meta": {"arm": "eval", "scene_id": scene.id, "scenes": [scene.compact()],
                    "enriched": enriched}}


def vocabulary(spec: WorldSpec) -> dict:
  return {"shapes": list(spec.shapes), "colours": list(spec.colours), "sizes": list(spec.sizes),
          "textures": list(spec.textures), "rows": list(spec.rows), "cols": list(spec.cols),
          "numbers": list(NUMBER_WORDS[:spec.max_objects + 1]), "relations": list(RELATIONS),
          "facts": {k: list(v) for k, v in spec.facts}}


def _write_json(path: str, obj) -> None:
  with open(path, "w") as f:
    json.dump(obj, f, indent=1)


def build_world(out_dir: str, *, num_scenes: int = 20000, seed: int = 0,
                num_eval_scenes: int = 500, num_shards: int = 1, spec: WorldSpec | None = None,
                num_text_docs: int | None = None, train_tok: bool = True, log=None) -> dict:
  """Writes a complete world under `out_dir`; returns the summary stored in world.json."""
  spec = validate_spec(spec or WorldSpec())
  log = log or (lambda msg: None)
  t0 = time.time()
  kb = world_scenes.sample_kb(spec, stream(seed, "kb"))
  fact_shapes = world_scenes.vqa_fact_shapes(spec, stream(seed, "vqa_fact_shapes"))
  scenes = world_scenes.sample_scenes(spec, num_scenes, stream(seed, "train_scenes"), "s")
  eval_scenes = world_scenes.sample_scenes(spec, num_eval_scenes, stream(seed, "eval_scenes"),
                                           "e")
  pngs = render_all(scenes, spec, stream(seed, "render_train"))
  eval_pngs = render_all(eval_scenes, spec, stream(seed, "render_eval"))
  qa_rng = stream(seed, "train_qa")
  qas = [world_qa.train_qas(s, spec, kb, qa_rng, fact_shapes) for s in scenes]
  eval_rng = stream(seed, "eval_qa")
  eval_qas = [world_qa.eval_qas(s, spec, kb, eval_rng) for s in eval_scenes]
  log(f"sampled and rendered {num_scenes} + {num_eval_scenes} scenes in {time.time() - t0:.1f}s")

  data = world_arms.WorldData(spec, kb, fact_shapes, scenes, pngs, qas,
                              num_text_docs if num_text_docs is not None
                              else max(1, num_scenes // 4))
  provenance = [records.provenance_entry("build_world", {
      "seed": seed, "num_scenes": num_scenes, "num_eval_scenes": num_eval_scenes})]
  os.makedirs(out_dir, exist_ok=True)
  corpus_path = os.path.join(out_dir, "corpus.txt")
  arm_counts, eval_counts = {}, {}
  with open(corpus_path, "w") as corpus:
    for arm, gen in world_arms.ARMS.items():
      t = time.time()
      recs = _tee_text(gen(data, stream(seed, "arm:" + arm)), corpus)
      m = records.write_records(os.path.join(out_dir, "arms", arm), recs, num_shards=num_shards,
                                source=f"{SOURCE}/{arm}", provenance=provenance)
      arm_counts[arm] = m["num_records"]
      log(f"arm {arm:15s} {m['num_records']:7d} records in {time.time() - t:.1f}s")
    recs = _tee_text(_eval_records(eval_scenes, eval_pngs, eval_qas, fact_shapes), corpus)
    records.write_records(os.path.join(out_dir, "eval", "vqa"), recs, num_shards=1,
                          source=f"{SOURCE}/eval", provenance=provenance)
    recs = _tee_text(_eval_captions(eval_scenes, eval_pngs, spec, stream(seed, "eval_caption")),
                     corpus)
    records.write_records(os.path.join(out_dir, "eval", "caption"), recs, num_shards=1,
                          source=f"{SOURCE}/eval", provenance=provenance)
  for qas_ in eval_qas:
    for qa in qas_:
      eval_counts[qa["qtype"]] = eval_counts.get(qa["qtype"], 0) + 1

  tok_info = None
  if train_tok:
    t = time.time()
    needed = tokenizer.count_words([corpus_path]) + 8  # + specials; an upper bound (see trainer)
    path = tokenizer.train_tokenizer([corpus_path], os.path.join(out_dir, "tokenizer"), needed)
    tok_info = {"path": os.path.basename(path),
                "vocab_size": tokenizer.Tokenizer(path).vocab_size}
    log(f"tokenizer: {tok_info['vocab_size']} pieces in {time.time() - t:.1f}s")

  with open(os.path.join(out_dir, "kb.jsonl"), "w") as f:
    for shape in spec.shapes:
      f.write(json.dumps({"name": shape, "type": "shape",
                          "facts": [f"{k} {v}" for k, v in kb[shape].items()],
                          "attributes": kb[shape], "taught_in_vqa": shape in fact_shapes}) + "\n")
  summary = {
      "format": WORLD_FORMAT, "version": WORLD_VERSION, "seed": seed, "num_scenes": num_scenes,
      "num_eval_scenes": num_eval_scenes, "spec": spec.to_json(), "kb": kb,
      "vqa_fact_shapes": fact_shapes, "vocabulary": vocabulary(spec),
      "colour_rgb": {c: list(COLOUR_RGB[c]) for c in spec.colours},
      "question_templates": _question_templates(),
      "arms": arm_counts, "arm_kinds": dict(ARM_KINDS), "eval": {"vqa": eval_counts,
                                                                 "caption": num_eval_scenes},
      "tokenizer": tok_info}
  _write_json(os.path.join(out_dir, "world.json"), summary)
  return {**summary, "build_seconds": round(time.time() - t0, 2)}


def _question_templates() -> dict:
  return {
      "attribute": ["what colour is the {shape} ?", "what shape is the {colour} object ?",
                    "what size is the {colour} {shape} ?"],
      "count": ["how many objects are there ?", "how many {colour} objects are there ?",
                "how many {shapes} are there ?"],
      "relation": ["is the {colour} {shape} {left of|right of|above|below} the {colour} {shape} ?"],
      "knowledge": [q for q, _ in world_qa.KNOWLEDGE_TEMPLATES.values()],
      "knowledge_refs": ["{colour} object (grounded)", "{shape} (ungrounded)"],
      "grounding": ["where is the {colour} {shape} ? (asked when spec.grounding is on)"]}


def load_world(world_dir: str) -> dict:
  """world.json with `spec` as a WorldSpec; RecordFormatError naming the file if absent/wrong."""
  path = os.path.join(world_dir, "world.json")
  if not os.path.isfile(path):
    raise RecordFormatError(f"{path}: not found; build a world with tools/build_world.py")
  with open(path) as f:
    world = json.load(f)
  if world.get("format") != WORLD_FORMAT or world.get("version") != WORLD_VERSION:
    raise RecordFormatError(f"{path}: format/version is {world.get('format')!r}/"
                            f"{world.get('version')!r}, expected '{WORLD_FORMAT}'/{WORLD_VERSION}")
  world["spec"] = WorldSpec.from_json(world["spec"])
  return world
