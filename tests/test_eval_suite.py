"""The evaluation suite on the tiny world with random-init params: every evaluator runs, results
land in results.json, sharded (data=2, fsdp=2, tensor=2) equals single-device evaluation, the
few-shot prompt is built as documented, and evaluation during training follows its schedule."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import tiny_train_config
from mmscale.data.transforms import builder_for
from mmscale.eval import fewshot, pairs, runner
from mmscale.eval.records import load_eval_records
from mmscale.eval.registry import DEFAULT_EVALS
from mmscale.testing import random_run
from mmscale.train.hooks import due_evaluators


def eval_config(world):
  c = tiny_train_config(world)
  c.eval.update(batch_size=16, max_examples=16, max_decode_len=3)
  return c


def make_ctx(config, devices):
  """A Run on `devices` with the same numpy-drawn params on every mesh."""
  config.eval.caption_max_len = 8
  return random_run(config, devices)


@pytest.fixture(scope="module")
def sharded(tiny_world, tmp_path_factory):
  config = eval_config(tiny_world)
  config.mesh.shape.update(data=2, fsdp=2, tensor=2)
  ctx = make_ctx(config, jax.devices())
  results = runner.run_evaluators(ctx, DEFAULT_EVALS)
  workdir = str(tmp_path_factory.mktemp("eval_run"))
  runner.write_results(workdir, 7, results)
  return ctx, results, workdir


@pytest.mark.slow
def test_results_json_holds_every_family(sharded):
  _, results, workdir = sharded
  with open(os.path.join(workdir, "eval", "results.json")) as f:
    saved = json.load(f)
  assert saved["step"] == 7 and os.path.isfile(os.path.join(workdir, "eval", "step_7.json"))
  for qtype in ("attribute", "count", "relation", "knowledge", "all"):
    for metric in ("accuracy", "soft_accuracy"):
      assert 0.0 <= saved[f"vqa/{metric}/{qtype}"] <= 1.0
  for shots in (0, 4, 8):
    assert 0.0 <= saved[f"fewshot/{shots}shot/accuracy/all"] <= 1.0
    assert saved[f"fewshot/{shots}shot/mean_shots"] == shots
  assert saved["text/perplexity"] > 1.0 and saved["text/targets"] > 0
  assert "text/fact_accuracy/all" in saved
  assert saved["caption/cider_d"] >= 0.0 and 0.0 <= saved["caption/bleu4"] <= 1.0
  assert saved["pairs/count/which"] > 0 and saved["pairs/count/differs"] > 0
  assert saved["heldout/perplexity"] > 1.0
  assert saved["metric_steps"]["vqa/accuracy/all"] == 7
  assert "few-shot accuracy" in runner.format_table(results)


def test_sharded_equals_single_device(sharded, tiny_world):
  _, results, _ = sharded
  config = eval_config(tiny_world)
  config.mesh.shape.update(data=1, fsdp=1, tensor=1)
  single = runner.run_evaluators(make_ctx(config, jax.devices()[:1]), ("vqa", "text"))
  for key, value in single.items():
    if "perplexity" in key or "loss" in key:
      np.testing.assert_allclose(results[key], value, rtol=1e-4, err_msg=key)
    else:
      assert results[key] == value, key


def test_fewshot_prompt_is_supports_then_query(sharded):
  ctx, _, _ = sharded
  cfg, tok = ctx.config, ctx.tokenizer
  k = ctx.layout.tokens_per_image
  builder = builder_for(cfg.data, ctx.layout, tok)
  recs = load_eval_records(cfg)
  query, supports = recs[0], fewshot.choose_supports(recs, 0, recs[0], 2, seed=0)
  assert all(s["meta"]["scene_id"] != query["meta"]["scene_id"] for s in supports)
  prompt, used = fewshot.build_prompt(builder, supports, query)
  assert used == 2
  text = lambda rec, loss: " ".join(s["text"] for s in rec["segments"]
                                    if "text" in s and (loss or not s["loss"]))
  expected = [tok.bos_id]
  expected_ar = [1]
  for rec in supports:
    expected += [tok.image_id] * k + tok.encode(text(rec, True))
    n_q = len(tok.encode(text(rec, False)))
    expected_ar += [1] + [0] * (k - 1) + [0] * n_q + [1] * (len(tok.encode(text(rec, True))) - n_q)
  expected += [tok.image_id] * k + tok.encode(text(query, False))
  expected_ar += [1] + [0] * (k - 1) + [0] * len(tok.encode(text(query, False)))
  assert prompt["tokens"].tolist() == expected  # no EOS between shots, one BOS, no query answer
  assert prompt["mask_ar"].tolist() == expected_ar
  image_starts = [i for i in range(len(expected)) if expected[i] == tok.image_id
                  and expected[i - 1] != tok.image_id]
  assert prompt["image_positions"].tolist() == [s + j for s in image_starts for j in range(k)]
  assert prompt["images"].shape[0] == 3
  np.testing.assert_array_equal(prompt["images"][-1], builder(query, prompt_only=True)["images"][0])
  short, used = fewshot.build_prompt(builder, supports, query,
                                     max_len=len(expected) - 1)  # too long: drops the first
  assert used == 1
  assert short["tokens"].tolist()[1:] == expected[len(expected) - len(short["tokens"]) + 1:]


def test_pair_questions_from_ground_truth():
  scenes = [[["circle", "red", "small", "plain", "top", "left"],
             ["square", "blue", "large", "plain", "top", "right"]],
            [["circle", "green", "small", "plain", "top", "left"],
             ["square", "blue", "large", "plain", "bottom", "right"]]]
  rec = {"id": "p", "images": [b"a", b"b"], "meta": {"scenes": scenes}}
  qs = {q["meta"]["qtype"]: q for q in pairs.pair_questions(rec, 0)}
  assert qs["which"]["segments"][2]["text"] == "what image is the red circle in ?"
  assert qs["which"]["meta"]["answer"] == "first"
  assert qs["differs"]["segments"][2]["text"] == "what colour is the circle in the first image ?"
  assert qs["differs"]["meta"]["answer"] == "red"
  qs = {q["meta"]["qtype"]: q for q in pairs.pair_questions(rec, 1)}
  assert qs["which"]["meta"]["answer"] == "second" and qs["differs"]["meta"]["answer"] == "green"


def test_per_evaluator_schedule(tiny_world):
  config = tiny_train_config(tiny_world, steps=40)
  config.eval.every = {"vqa": 10, "fewshot": 0}
  due = lambda step: due_evaluators(config, ("vqa", "text", "fewshot"), step, 20)
  assert due(10) == ["vqa"]
  assert due(20) == ["vqa", "text"]
  assert due(7) == []
  assert due(40) == ["vqa", "text"]


class _Writer:
  def __init__(self):
    self.rows = []

  def write_scalars(self, step, scalars):
    self.rows.append((step, scalars))


def test_eval_hook_runs_due_evaluators(sharded, tmp_path):
  from mmscale.train.hooks import EvalHook  # pylint: disable=import-outside-toplevel
  import dataclasses  # pylint: disable=import-outside-toplevel
  ctx, results, _ = sharded
  config = ctx.config.copy_and_resolve_references()
  config.train.steps = 20
  config.eval.every = {"vqa": 5}
  train_ctx = dataclasses.replace(ctx, spec=dataclasses.replace(ctx.spec, config=config),
                                  workdir=str(tmp_path), writer=_Writer())
  hook = EvalHook(every=0, names=("vqa", "text"))
  for step in (3, 5):
    hook(train_ctx, step)
  assert [s for s, _ in train_ctx.writer.rows] == [5]
  with open(tmp_path / "eval" / "results.json") as f:
    saved = json.load(f)
  assert saved["step"] == 5 and saved["vqa/accuracy/all"] == results["vqa/accuracy/all"]
  assert "text/perplexity" not in saved  # text has no interval (eval_every 0, no eval.every)


def test_generate_cli_errors(tmp_path):
  from mmscale.eval import generate_cli as cli  # pylint: disable=import-outside-toplevel
  from mmscale.errors import CheckpointError, DataError  # pylint: disable=import-outside-toplevel
  kw = dict(max_new_tokens=2, temperature=0.0, top_p=1.0, seed=0)
  with pytest.raises(DataError, match="image file .*nope.png not found"):
    cli.run(str(tmp_path), None, None, [str(tmp_path / "nope.png")], "hi", **kw)
  with pytest.raises(CheckpointError, match="config.json not found"):
    cli.run(str(tmp_path), None, None, [], "hi", **kw)
  with pytest.raises(CheckpointError, match="--workdir"):
    cli.run(None, None, None, [], "hi", **kw)


def test_an_unreadable_image_is_a_counted_skip_in_file_evaluators(sharded, tmp_path):
  """vqa_file / caption_file over a local file with one broken image: scored on the rest."""
  ctx, _, _ = sharded
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.new("RGB", (48, 48), (200, 10, 10)).save(tmp_path / "good.png")
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
  (tmp_path / "vqa.json").write_text(json.dumps(
      [{"question": "what colour ?", "image": name, "answer": "red"}
       for name in ("good.png", "broken.png", "good.png")]))
  (tmp_path / "captions.json").write_text(json.dumps({
      "images": [{"id": 1, "file_name": "good.png"}, {"id": 2, "file_name": "broken.png"}],
      "annotations": [{"image_id": 1, "caption": "a red square"},
                      {"image_id": 2, "caption": "a broken file"}]}))
  ctx.config.eval.update(vqa_json=str(tmp_path / "vqa.json"),
                         caption_json=str(tmp_path / "captions.json"))
  try:
    results = runner.run_evaluators(ctx, ("vqa_file", "caption_file"))
  finally:
    ctx.config.eval.update(vqa_json="", caption_json="")
  assert results["vqa_file/count/skipped"] == 1 and "vqa_file/accuracy/all" in results
  assert results["caption_file/count/all"] == 1 and results["caption_file/count/skipped"] == 1
