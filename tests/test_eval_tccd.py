"""TCCD as a decoding option of the evaluation suite (mmscale/eval/contrastive.py, erasure.py):
alpha 0 is plain decoding, identity erasure makes TCCD plain greedy, alpha/beta do not recompile,
a missing centroid file is a clear error, and the vqa evaluator decodes with TCCD end to end."""

import dataclasses
import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import tiny_train_config
from mmscale.analysis import hidden
from mmscale.data.batch import one_per_row
from mmscale.data.transforms import builder_for
from mmscale.errors import ConfigError
from mmscale.eval import contrastive, generate, predict, runner
from mmscale.eval.erasure import CentroidSet, ErasedPass, erased_params
from mmscale.eval.records import load_eval_records
from mmscale.models import build_model
from mmscale.testing import numpy_init, random_run, synthetic_batch, tiny_model_config

PROMPT, NEW = 12, 4


def _tiny():
  cfg = tiny_model_config()
  model = build_model(cfg)
  batch = synthetic_batch(cfg, batch=2, seq_len=PROMPT + NEW, seed=3)
  params = numpy_init(model, batch)["params"]
  prompt = {k: v[:, :PROMPT] if k not in ("images", "image_positions") else v
            for k, v in batch.items()}
  return cfg, model, params, batch, prompt


def test_identity_erasure_is_plain_greedy_and_alpha_is_traced():
  cfg, model, params, batch, prompt = _tiny()
  plain = np.asarray(generate.generate(model, params, prompt, max_new_tokens=NEW))
  full = {k: np.array(v) for k, v in batch.items()}
  full["tokens"][:, PROMPT:] = plain
  full["mask_ar"][:, PROMPT:] = 1
  layers = (0, 1)
  states, masks = hidden.hidden_states(model, params, full, layers)
  # One centroid per text hidden state met while decoding (prompt and generated tokens): the
  # erased reference equals the full model, so (1 + a) f - a f = f.
  centroids = np.asarray(states)[:, np.asarray(masks["text"])]
  identity = {"centroids": centroids, "active": np.ones(cfg.decoder.depth, bool)}
  before = generate._generate_cached._cache_size()  # pylint: disable=protected-access
  for alpha in (2.0, 0.5):
    out = generate.generate(prompt=prompt, max_new_tokens=NEW,
                            **contrastive.tccd_decoding(model, params, identity, alpha, 0.0))
    np.testing.assert_array_equal(np.asarray(out), plain)
  assert generate._generate_cached._cache_size() == before + 1  # pylint: disable=protected-access
  # Not vacuous: the identity reference pass reproduces the full logits, random centroids (same
  # shapes: one compilation) do not.
  erased = ErasedPass(model, modality="text")
  reference = jax.jit(lambda layers: erased.apply({"params": erased_params(params, layers)}, full))
  logits = np.asarray(jax.jit(model.apply)({"params": params}, full))
  np.testing.assert_allclose(np.asarray(reference(identity)), logits, atol=1e-4)
  rng = np.random.default_rng(0)
  random = dict(identity, centroids=rng.normal(size=centroids.shape).astype(np.float32))
  assert np.abs(np.asarray(reference(random)) - logits).max() > 1e-2


def _ctx(world, workdir, **eval_fields):
  """A Run of a random-init tiny model over the 8 test devices (data=8)."""
  config = tiny_train_config(world)
  config.eval.update(batch_size=8, max_examples=8, max_decode_len=3, **eval_fields)
  return random_run(config, workdir=workdir)


def _save_centroids(directory, width, layers=(1,), k=4):
  rng = np.random.default_rng(1)
  arrays = {m: rng.normal(size=(len(layers), k, width)).astype(np.float32)
            for m in ("text", "image")}
  return CentroidSet(layers=layers, k=k, centroids=arrays).save(directory)


def test_missing_centroids_is_a_clear_error(tiny_world, tmp_path):
  ctx = _ctx(tiny_world, str(tmp_path), tccd_alpha=1.0)
  _save_centroids(str(tmp_path / "analysis" / "probe_l1_k4"), 64)
  default = os.path.join(str(tmp_path), "analysis", "centroids.npz")
  with pytest.raises(ConfigError, match="tools/probe.py") as err:
    contrastive.decoding(ctx)
  assert default in str(err.value) and "probe_l1_k4/centroids.npz" in str(err.value)
  ctx.config.eval.tccd_centroids = "/nonexistent/centroids.npz"
  with pytest.raises(ConfigError, match="/nonexistent/centroids.npz not found"):
    contrastive.decoding(ctx)
  ctx.config.eval.tccd_alpha = 0.0  # off: no file needed
  assert contrastive.decoding(ctx)["model"] is ctx.model


def test_vqa_with_tccd_on_tiny_world(tiny_world, tmp_path):
  workdir = str(tmp_path)
  _save_centroids(os.path.join(workdir, "analysis"), 64)  # the default location
  plain_ctx = _ctx(tiny_world, workdir)
  tccd_ctx = _ctx(tiny_world, workdir, tccd_alpha=1.0, tccd_beta=0.2)
  cfg, tok = plain_ctx.config, plain_ctx.tokenizer
  builder = builder_for(cfg.data, plain_ctx.layout, tok)
  prompts = [builder(r, prompt_only=True) for r in load_eval_records(cfg)[:8]]
  with jax.set_mesh(plain_ctx.mesh), nn.logical_axis_rules(plain_ctx.rules):
    # alpha 0: the evaluators' decoding is exactly plain greedy decoding.
    ids = predict.generate_ids(plain_ctx, prompts, max_new_tokens=3)
    layout = dataclasses.replace(plain_ctx.layout, max_images=1)
    batch = one_per_row(prompts, layout, length=max(len(p["tokens"]) for p in prompts),
                        pad="left")
    direct = generate.generate(plain_ctx.model, plain_ctx.params, plain_ctx.to_global(batch),
                               max_new_tokens=3, stop_ids=(tok.eos_id,), pad_id=tok.pad_id,
                               valid_vocab=tok.vocab_size)
  assert ids == generate.cut_at_stop(plain_ctx.to_host(direct), (tok.eos_id, tok.pad_id))
  results = runner.run_evaluators(tccd_ctx, ("vqa",))
  assert 0.0 <= results["vqa/accuracy/all"] <= 1.0 and results["vqa/count/all"] == 8
  decoding = contrastive.describe(tccd_ctx.config, workdir)
  runner.write_results(workdir, 3, results, decoding)
  with open(os.path.join(workdir, "eval", "results.json")) as f:
    saved = json.load(f)
  assert saved["decoding"]["tccd_alpha"] == 1.0 and saved["decoding"]["tccd_beta"] == 0.2
  assert saved["decoding"]["tccd_layers"] == [1]
  assert saved["decoding"]["tccd_centroids"].endswith(os.path.join("analysis", "centroids.npz"))
