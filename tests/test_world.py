"""Knowledge world: determinism, every arm and eval type present, answers exact and one token,
images and cells consistent with the ground truth, descriptors consistent with the text."""
import collections
import importlib.util
import json
import math
import os

import numpy as np
import pytest

from mmscale.data import records, world, world_render, world_scenes
from mmscale.data.tokenizer import Tokenizer
from mmscale.data.world_spec import BACKGROUND_RGB, NUMBER_WORDS, WorldSpec, validate_spec
from mmscale.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", name + ".py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("world"))
  _tool("build_world").main(["build_world.py", f"--out={out}", "--num_scenes=90",
                             "--num_eval_scenes=40", "--seed=3", "--num_shards=2", "--quiet"])
  return out, world.load_world(out)


def _all(out, sub):
  return list(records.iter_records(os.path.join(out, sub)))


def test_layout_and_arm_kinds(built):
  out, w = built
  for name in ("world.json", "kb.jsonl", "corpus.txt", "tokenizer.model"):
    assert os.path.isfile(os.path.join(out, name))
  assert set(w["arms"]) == set(world.ARM_KINDS)
  for arm, kind in world.ARM_KINDS.items():
    m = records.read_manifest(os.path.join(out, "arms", arm))
    assert m["counts"] == {kind: w["arms"][arm]} and m["num_records"] > 0
    assert len(m["shards"]) == 2 and m["provenance"][0]["stage"] == "build_world"
  assert w["arms"]["caption"] == w["arms"]["enriched"] == w["arms"]["knowledge"] == 90
  assert w["arms"]["vqa"] == 3 * 90 and w["arms"]["text"] == 90 // 4
  kb = [json.loads(line) for line in open(os.path.join(out, "kb.jsonl"))]
  assert [e["name"] for e in kb] == list(w["spec"].shapes)
  assert all(len(e["facts"]) == 3 for e in kb)


def test_eval_types_and_single_token_answers(built):
  out, w = built
  tok = Tokenizer(os.path.join(out, "tokenizer.model"))
  assert tok.vocab_size < 120
  recs = _all(out, "eval/vqa")
  qtypes = collections.Counter(r["meta"]["qtype"] for r in recs)
  assert set(qtypes) == {"attribute", "count", "relation", "knowledge"}
  forms = {r["meta"]["qform"].split("_")[0] for r in recs if r["meta"]["qtype"] == "knowledge"}
  assert forms == {"grounded", "ungrounded"}
  for r in recs:
    m = r["meta"]
    q, a = r["segments"][1], r["segments"][2]
    assert r["kind"] == "vqa" and not q["loss"] and a["loss"] and a["text"] == m["answer"]
    assert m["scene_id"].startswith("e") and m["answer"] in m["choices"]
    for choice in m["choices"]:
      ids = tok.encode(choice)
      assert len(ids) == 1 and ids[0] != tok.unk_id, choice
    assert tok.unk_id not in tok.encode(q["text"])


def _objects(rec, k=0):
  return [world_scenes.Obj(*o) for o in rec["meta"]["scenes"][k]]


def test_eval_answers_match_ground_truth(built):
  out, w = built
  kb = w["kb"]
  for r in _all(out, "eval/vqa"):
    m, objs, q = r["meta"], _objects(r), r["segments"][1]["text"]
    if m["qform"] == "total":
      assert m["answer"] == NUMBER_WORDS[len(objs)]
    elif m["qtype"] == "relation":
      words = q.split()  # is the C S <pred...> the C S ?
      a = next(o for o in objs if o.name == " ".join(words[2:4]))
      b = next(o for o in objs if o.name == " ".join(words[-3:-1]))
      assert world_scenes.holds(a, " ".join(words[4:-4]), b) == (m["answer"] == "yes")
    elif m["qtype"] == "knowledge":
      key = m["qform"].split("_")[1]
      assert kb[m["shape"]][key] == m["answer"]
      assert m["taught"] == (m["shape"] in w["vqa_fact_shapes"])
    elif m["qtype"] == "count":  # how many <colour> objects / <shapes> are there ?
      word = q.split()[2]
      n = sum(o.colour == word or word in (o.shape + "s", o.shape + "es") for o in objs)
      assert m["answer"] == NUMBER_WORDS[n]
    elif m["qform"] == "colour":
      assert [o.colour for o in objs if o.shape == q.split()[4]] == [m["answer"]]
    elif m["qform"] == "shape":
      assert [o.shape for o in objs if o.colour == q.split()[4]] == [m["answer"]]


def test_scenes_images_and_cells(built):
  out, w = built
  spec = w["spec"]
  for r in _all(out, "arms/caption") + _all(out, "eval/caption"):
    objs = _objects(r)
    assert spec.min_objects <= len(objs) <= spec.max_objects
    assert len({(o.row, o.col) for o in objs}) == len(objs)
    assert len({(o.colour, o.shape) for o in objs}) == len(objs)
    img = world_render.decode_image(r["images"][0])
    assert img.shape == (48, 48, 3)
    c = spec.cell
    occupied = {(o.row, o.col) for o in objs}
    for row in range(spec.grid):
      for col in range(spec.grid):
        cell = img[row * c:(row + 1) * c, col * c:(col + 1) * c]
        empty = bool((cell == np.asarray(BACKGROUND_RGB, np.uint8)).all())
        assert empty == ((row, col) not in occupied)


def test_descriptors_match_text(built):
  out, _ = built
  for r in _all(out, "arms/caption"):
    text = r["segments"][1]["text"]
    assert {f"{o['attributes'][0]} {o['name']}" for o in r["descriptor"]["objects"]} == {
        o.name for o in _objects(r)}
    assert all(f"a {o.name}" in text for o in _objects(r))
  for arm in ("enriched", "knowledge"):
    for r in _all(out, f"arms/{arm}"):
      text, d = r["segments"][1]["text"], r["descriptor"]
      assert len(d["objects"]) == len(_objects(r))
      for o in d["objects"]:
        assert " ".join(o["attributes"][:-1] + [o["name"], o["attributes"][-1]]) in text
      for rel in d["relations"]:
        assert f"{rel['subject']} {rel['predicate']} {rel['object']}" in text or \
            rel["predicate"].startswith("same")
      for e in d["entities"]:
        assert all(f in text for f in e["facts"])
      assert bool(d["entities"]) == (arm == "knowledge")
  for r in _all(out, "arms/text"):
    assert r["kind"] == "text" and not r["images"] and r["descriptor"]["entities"]


def test_vqa_and_vqa_as_caption_share_content(built):
  out, w = built
  vqa = collections.defaultdict(list)
  for r in _all(out, "arms/vqa"):
    vqa[r["meta"]["scene_id"]].append(r)
    if r["meta"]["qtype"] == "knowledge":
      assert r["descriptor"]["entities"][0]["name"] in w["vqa_fact_shapes"]
  for r in _all(out, "arms/vqa_as_caption"):
    qas = vqa[r["meta"]["scene_id"]]
    assert len(qas) == 3
    assert len(r["segments"][1]["text"].split(" . ")) == len(qas)


def test_pairs_are_aligned_and_contrasted(built):
  out, _ = built
  recs = _all(out, "arms/pairs")
  assert len(recs) > 30
  for r in recs:
    a, b = _objects(r, 0), _objects(r, 1)
    assert sorted(o.shape for o in a) == sorted(o.shape for o in b)
    assert sorted(a) != sorted(b) and r["descriptor"]["comparison"]["differences"]
    assert r["kind"] == "pair" and len(r["images"]) == 2
    assert [s.get("image") for s in r["segments"][:2]] == [0, 1]


def test_pair_similarities_are_exact_so_ties_break_alike_on_every_cpu():
  """Pairing's cosine similarities equal the correctly rounded scalar formula bit for bit (no
  BLAS rounding, which differs between CPUs and broke exact ties differently), and scenes with
  identical descriptors tie exactly, so `argmax` picks the lowest index everywhere."""
  rng = np.random.default_rng(0)
  counts = rng.integers(0, 3, size=(40, 12)).astype(np.int64)
  counts[7] = counts[3]  # an exact tie for every other row
  sims = world_scenes.cosine_similarities(counts)
  for i in range(len(counts)):
    for j in range(len(counts)):
      a, b = [int(v) for v in counts[i]], [int(v) for v in counts[j]]
      dot = sum(x * y for x, y in zip(a, b))
      norm = math.sqrt(max(sum(x * x for x in a), 1)) * math.sqrt(max(sum(y * y for y in b), 1))
      assert sims[i, j] == dot / norm, (i, j)
  assert (sims[:, 3] == sims[:, 7]).all()


def test_interleaved_documents(built):
  out, _ = built
  for r in _all(out, "arms/interleaved"):
    n = len(r["images"])
    assert 1 <= n <= 4 and [s.get("image") for s in r["segments"][::2]] == list(range(n))


def test_determinism_for_a_seed(tmp_path):
  def build(name, seed):
    out = str(tmp_path / name)
    world.build_world(out, num_scenes=30, num_eval_scenes=10, seed=seed, train_tok=False)
    return out
  a, b, c = build("a", 5), build("b", 5), build("c", 6)
  for sub in ("arms/caption", "arms/pairs", "arms/vqa", "arms/text", "eval/vqa"):
    assert _all(a, sub) == _all(b, sub)
  assert _all(a, "arms/caption") != _all(c, "arms/caption")
  assert open(os.path.join(a, "corpus.txt")).read() == open(os.path.join(b, "corpus.txt")).read()


def test_spec_validation():
  with pytest.raises(ConfigError, match="image_size"):
    validate_spec(WorldSpec(image_size=50))
  with pytest.raises(ConfigError, match="shapes"):
    validate_spec(WorldSpec(shapes=("circle", "hexagon")))
  with pytest.raises(ConfigError, match="collide"):
    validate_spec(WorldSpec(facts=(("family", ("red", "zorb")),)))
  spec = WorldSpec(textures=("plain", "striped"), grid=4, image_size=32)
  assert WorldSpec.from_json(json.loads(json.dumps(spec.to_json()))) == validate_spec(spec)


def test_inspect_tool_writes_a_sheet(built, tmp_path, capsys):
  out, _ = built
  sheet = str(tmp_path / "sheet.png")
  _tool("inspect_data").main(["inspect_data.py", out, "--max_records=50", f"--sheet={sheet}"])
  assert os.path.getsize(sheet) > 0 and "arms/pairs" in capsys.readouterr().out
