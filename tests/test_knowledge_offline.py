"""Knowledge engine offline: exact on the knowledge world (descriptors, reconstruction, pairing
rules, density), schema validation and the semantic filter."""
import collections
import copy
import json
import os

import pytest

from mmscale.data import records, world, world_scenes
from mmscale.knowledge import (caption2vqa, density, descriptors, enrich, filter as filter_lib,
                               inject, pairing, parse, stages, vocab, vqa2caption)
from mmscale.knowledge import schema as js


@pytest.fixture(scope="module")
def kworld(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("kworld"))
  world.build_world(out, num_scenes=300, num_eval_scenes=20, seed=1, train_tok=False)
  return out


@pytest.fixture(scope="module")
def voc(kworld):
  return vocab.load_vocabulary(kworld)


def arm(kworld, name):
  return list(records.iter_records(os.path.join(kworld, "arms", name)))


@pytest.mark.parametrize("name", ["caption", "enriched", "knowledge", "vqa_as_caption", "text",
                                  "interleaved"])
def test_offline_describe_equals_ground_truth(kworld, voc, name):
  for rec in arm(kworld, name):
    if rec["kind"] == "interleaved":
      got = parse.describe_segments(stages.texts(rec), voc)
    else:
      got = parse.describe(" ".join(t for _, t in stages.texts(rec)), voc, stages.grounding(rec))
    assert descriptors.descriptor_errors(got) == []
    assert descriptors.canonical(got) == descriptors.canonical(rec["descriptor"]), rec["id"]


def test_vqa2caption_reconstructs_the_worlds_statements(kworld, voc):
  by_scene = collections.defaultdict(list)
  for rec in arm(kworld, "vqa"):
    by_scene[rec["meta"]["scene_id"]].append(rec)
  for rec in arm(kworld, "vqa_as_caption"):
    qas = sorted(by_scene[rec["meta"]["scene_id"]], key=lambda r: r["id"])
    text = " ".join(vqa2caption.statement(r["segments"][1]["text"], r["segments"][2]["text"],
                                          voc)[0] for r in qas)
    assert text == rec["segments"][1]["text"]


def _fold(desc):
  c = descriptors.canonical(desc)
  c["relations"] = sorted(pairing._rel_key(r) for r in desc["relations"])  # pylint: disable=protected-access
  return c


def test_enrich_states_everything_and_parses_back(kworld, voc):
  kb = vocab.load_kb(os.path.join(kworld, "kb.jsonl"))
  knowledge = {r["meta"]["scene_id"]: r["descriptor"] for r in arm(kworld, "knowledge")}
  for rec in arm(kworld, "enriched"):
    dense = enrich.inject_facts(rec["descriptor"], kb, voc)
    text = enrich.render(dense, voc)
    back = parse.describe(text, voc)
    assert descriptors.canonical(back) == descriptors.canonical(dense)
    assert _fold(back) == _fold(knowledge[rec["meta"]["scene_id"]])


def test_caption2vqa_questions_read_back_into_the_descriptor(kworld, voc):
  for rec in arm(kworld, "knowledge")[:100]:
    desc = rec["descriptor"]
    qas = caption2vqa.questions(desc, voc)
    assert {q["qtype"] for q in qas} >= {"count", "knowledge"}
    text = " ".join(vqa2caption.statement(q["question"], q["answer"], voc)[0] for q in qas)
    back = density.items(parse.describe(text, voc))
    truth = density.items(desc)
    names = collections.Counter(o["name"] for o in desc["objects"])
    assert {(n, a) for n, a in truth["attributes"] if names[n] == 1} == set(back["attributes"])
    assert set(truth["facts"]) == set(back["facts"])
    assert {r for r in truth["relations"] if not r[1].startswith("same")} <= set(
        back["relations"])


def test_schema_validator_reports_each_violation():
  good = descriptors.empty_descriptor("grid")
  assert descriptors.descriptor_errors(good) == []
  bad = {"objects": [{"name": "ring", "attributes": "red", "count": -1}], "relations": [{}],
         "scene": 3, "text_in_image": [], "entities": []}
  errors = descriptors.descriptor_errors(bad)
  assert any("attributes" in e for e in errors) and any("minimum" in e for e in errors)
  assert "$.relations[0]: 'subject' is a required property" in errors
  assert any("$.scene" in e for e in errors)


def test_schema_keywords_are_all_enforced_and_bad_schemas_fail_when_built():
  """jsonschema validates every keyword (the hand-written subset ignored e.g. minLength and
  pattern), and a schema that is not valid JSON Schema fails when it is built."""
  import jsonschema  # pylint: disable=import-outside-toplevel
  schema = js.obj({"code": {"type": "string", "minLength": 2, "pattern": "^[A-Z]+$"}})
  assert js.schema_errors({"code": "AB"}, schema) == []
  assert js.schema_errors({"code": "a"}, schema) == [
      "$.code: 'a' does not match '^[A-Z]+$'", "$.code: 'a' is too short"]
  with pytest.raises(jsonschema.SchemaError):
    js.obj({"n": {"type": "integr"}})
  with pytest.raises(jsonschema.SchemaError):
    js.string_array(min_items=-1)


@pytest.mark.parametrize("cfg", [pairing.PairConfig(),
                                 pairing.PairConfig(0.5, 0.95, max_pairs=3, max_block=16)])
def test_every_pair_satisfies_alignment_contrast_and_band(kworld, cfg):
  items = [(r["id"], r["descriptor"]) for r in arm(kworld, "enriched")]
  descs = dict(items)
  pairs = pairing.find_pairs(items, cfg)
  assert len(pairs) > 30
  degree = collections.Counter()
  for a, b, sim in pairs:
    assert a != b
    assert pairing.pair_ok(descs[a], descs[b], sim, cfg), (a, b, sim)
    degree[a] += 1
    degree[b] += 1
  assert max(degree.values()) <= cfg.max_pairs
  assert len({frozenset((a, b)) for a, b, _ in pairs}) == len(pairs)


def _truth_knowledge_arm(kworld):
  """Expected density of the knowledge arm straight from the generator's ground truth
  (meta.scenes + world.json kb), without reading any descriptor."""
  w = world.load_world(kworld)
  spec, kb = w["spec"], w["kb"]
  uniq = {c: set() for c in ("concepts", "attributes", "relations", "facts")}
  statements = tokens = n = 0
  for rec in arm(kworld, "knowledge"):
    n += 1
    tokens += len(rec["segments"][1]["text"].split())
    scene = world_scenes.Scene("x", tuple(world_scenes.Obj(*o) for o in rec["meta"]["scenes"][0]))
    shapes = sorted({o.shape for o in scene.objects}, key=spec.shapes.index)
    uniq["concepts"] |= set(shapes)
    for o in scene.objects:
      uniq["attributes"] |= {(o.shape, o.size), (o.shape, o.colour),
                             (o.shape, f"{spec.rows[o.row]} {spec.cols[o.col]}")}
    rels = [(b.name, "left of", a.name) if p == "right of" else (a.name, p, b.name)
            for a, p, b in world_scenes.canonical_relations(scene)]
    for i, a in enumerate(shapes):
      for b in shapes[i + 1:]:
        rels += [(a, f"same {k} as", b) for k in kb[a] if kb[a][k] == kb[b][k]]
    uniq["relations"] |= set(rels)
    facts = {(s, f"{k} {v}") for s in shapes for k, v in kb[s].items()}
    uniq["facts"] |= facts
    statements += 4 * len(scene.objects) + len(rels) + len(facts)
  return n, tokens, statements, {c: len(v) for c, v in uniq.items()}


def test_density_equals_ground_truth(kworld):
  n, tokens, statements, uniq = _truth_knowledge_arm(kworld)
  rep = density.report_dir(os.path.join(kworld, "arms", "knowledge"),
                           inventory=density.load_inventory(os.path.join(kworld, "eval", "vqa")))
  assert rep["records"] == n and rep["tokens"] == tokens and rep["statements"] == statements
  assert {c: rep["unique"][c] for c in uniq} == uniq
  assert rep["statements_per_token"] == pytest.approx(statements / tokens)
  assert rep["task_formats"] == 1 and rep["coverage"]["facts"]["fraction"] == 1.0
  vqa = density.report_dir(os.path.join(kworld, "arms", "vqa"))
  forms = {f"vqa:{r['meta']['qform']}" for r in arm(kworld, "vqa")}
  assert vqa["task_formats"] == len(forms)


def test_filter_keeps_consistent_and_rejects_wrong_comparisons(kworld, voc):
  items = [(r["id"], r["descriptor"]) for r in arm(kworld, "enriched")]
  descs = dict(items)
  a, b, _ = pairing.find_pairs(items, pairing.PairConfig())[0]
  comp = inject.compare(descs[a], descs[b], {}, voc)
  assert filter_lib.check(descs[a], descs[b], comp, voc) == {"keep": True, "reason": "ok"}
  wrong = copy.deepcopy(comp)
  wrong["differences"][0]["first"], wrong["differences"][0]["second"] = (
      wrong["differences"][0]["second"], wrong["differences"][0]["first"])
  assert filter_lib.check(descs[a], descs[b], wrong, voc)["reason"] == "wrong_difference"
  empty = dict(comp, differences=[])
  assert filter_lib.check(descs[a], descs[b], empty, voc)["reason"] == "no_difference"
  made_up = dict(comp, shared=["large cross"])
  assert not filter_lib.check(descs[a], descs[b], made_up, voc)["keep"]
  assert json.dumps(comp)  # the comparison is plain JSON
