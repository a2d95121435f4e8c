"""Relation questions in the `which` form (WorldSpec.relation_form): answers agree with the cells
on hand-made scenes, the answer set is balanced, the probe holds the true statement, the default
world is unchanged, the build is deterministic, and a bad form is one clear error."""
import collections
import json
import importlib.util
import os

import numpy as np
import pytest

from mmscale.data import records, world, world_qa
from mmscale.data.world_scenes import Obj, Scene, sample_scene
from mmscale.data.world_spec import WorldSpec, validate_spec
from mmscale.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHICH = WorldSpec(relation_form="which")


def _build_world_tool():
  """tools/build_world.py as a module (its parse_args and main)."""
  spec = importlib.util.spec_from_file_location(
      "build_world", os.path.join(ROOT, "tools", "build_world.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  return tool


def _obj(shape, colour, row, col):
  return Obj(shape, colour, "large", "plain", row, col)


@pytest.mark.parametrize("cell_a, cell_b, answer", [
    ((0, 0), (1, 2), "above and left of"), ((2, 0), (0, 1), "below and left of"),
    ((0, 2), (2, 0), "above and right of"), ((2, 2), (1, 1), "below and right of"),
    ((1, 0), (1, 2), "left of"), ((0, 2), (0, 1), "right of"),
    ((0, 1), (2, 1), "above"), ((2, 0), (1, 0), "below")])
def test_which_answer_agrees_with_the_cells(cell_a, cell_b, answer):
  a, b = _obj("circle", "red", *cell_a), _obj("square", "blue", *cell_b)
  rng = np.random.default_rng(0)
  for _ in range(10):  # either object may be asked about first
    qa = world_qa.relation_qa(Scene("s", (a, b)), WHICH, {}, rng, None)
    first, second = (a, b) if qa["question"].startswith("where is the red") else (b, a)
    want = answer if first is a else world_qa.relation_words(b, a)
    assert qa["question"] == f"where is the {first.name} relative to the {second.name} ?"
    assert (qa["qtype"], qa["form"], qa["answer"]) == ("relation", "which", want)
    assert qa["choices"] == list(world_qa.WHICH_ANSWERS)
    assert qa["statement"] == f"the {first.name} is {want} the {second.name} ."
    assert qa["statements"][qa["statement_values"].index(qa["statement_answer"])] \
        == qa["statement"]
    assert len(qa["statements"]) == 8 and qa["statement_answer"] == want
    assert qa["descriptor"]["relations"] == [
        {"subject": first.name, "predicate": want, "object": second.name}]
  assert world_qa.relation_words(b, a) != answer  # the reverse is a different answer


def test_which_answers_are_balanced_and_the_default_is_yesno():
  spec = WorldSpec(shapes=("circle", "square", "triangle", "cross"),
                   colours=("red", "green", "blue", "yellow"), sizes=("large",),
                   min_objects=2, max_objects=2, relation_form="which")
  rng = np.random.default_rng(0)
  counts = collections.Counter(
      world_qa.relation_qa(sample_scene(spec, rng, str(i)), spec, {}, rng, None)["answer"]
      for i in range(4000))
  assert set(counts) == set(world_qa.WHICH_ANSWERS)
  # Two objects in distinct cells of a 3x3 grid: each answer is 9 of the 72 ordered cell pairs.
  assert max(counts.values()) / 4000 < 0.15 and min(counts.values()) / 4000 > 0.10
  qa = world_qa.relation_qa(sample_scene(spec, rng, "d"), WorldSpec(), {}, rng, None)
  assert qa["form"] == "yesno" and qa["choices"] == ["yes", "no"]


def test_which_world_is_deterministic_and_keeps_the_captions(tmp_path):
  def build(name, spec):
    out = str(tmp_path / name)
    world.build_world(out, num_scenes=30, num_eval_scenes=10, seed=2, spec=spec,
                      train_tok=False)
    return out

  def read(out, sub):
    return list(records.iter_records(os.path.join(out, sub)))

  a, b, yesno = build("a", WHICH), build("b", WHICH), build("y", WorldSpec())
  for sub in ("arms/vqa", "eval/vqa"):
    assert read(a, sub) == read(b, sub)
  for sub in ("arms/caption", "arms/enriched", "arms/knowledge", "arms/pairs"):
    assert read(a, sub) == read(yesno, sub)
  rel = [r for r in read(a, "eval/vqa") if r["meta"]["qtype"] == "relation"]
  assert rel and all(r["meta"]["qform"] == "which" for r in rel)
  assert all(r["meta"]["answer"] in world_qa.WHICH_ANSWERS for r in rel)
  assert world.load_world(a)["spec"].relation_form == "which"


def test_bad_relation_form_is_one_clear_error():
  with pytest.raises(ConfigError, match="relation_form.*yesno.*which.*'both'"):
    validate_spec(WorldSpec(relation_form="both"))
  tool = _build_world_tool()
  assert tool.parse_args(["b", "--out=x", "--relation_form=which"])["relation_form"] == "which"


def test_relations_preset_sets_its_fields_and_explicit_flags_win(tmp_path):
  tool = _build_world_tool()
  preset = tool.parse_args(["b", "--out=x", "--preset=relations"])
  assert (preset["relation_form"], preset["grounding"], preset["min_objects"],
          preset["max_objects"], len(preset["shapes"])) == ("which", True, 2, 2, 4)
  assert tool.parse_args(["b", "--out=x", "--preset=relations",
                          "--max_objects=3"])["max_objects"] == 3
  assert tool.parse_args(["b", "--out=x"])["relation_form"] == WorldSpec().relation_form
  out = str(tmp_path / "w")
  tool.main(["b", f"--out={out}", "--preset=relations", "--num_scenes=20", "--num_eval=5",
             "--no_tokenizer", "--quiet"])
  with open(os.path.join(out, "world.json")) as f:
    written = json.load(f)["spec"]
  assert written["relation_form"] == "which" and written["colours"] == list(
      tool.WORLD_PRESETS["relations"]["colours"])
  with pytest.raises(SystemExit):
    tool.parse_args(["b", "--out=x", "--preset=nope"])
