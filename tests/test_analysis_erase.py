"""Centroid replacement in the decoder: identity with one centroid per distinct state; erasure
changes outputs; the erased KV-cached decode agrees with full recompute under the same erasure."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mmscale.analysis import decoding, hidden
from mmscale.models import build_model
from mmscale.testing import numpy_init, synthetic_batch, tiny_model_config

LAYERS = (0, 1)  # the tiny decoder has 2 blocks


@functools.lru_cache(maxsize=None)
def _setup():
  cfg = tiny_model_config()
  model = build_model(cfg)
  batch = synthetic_batch(cfg, batch=2, seq_len=20)
  params = numpy_init(model, batch)["params"]
  states, masks = hidden.hidden_states(model, params, batch, LAYERS)
  return model, params, batch, np.asarray(states), {m: np.asarray(v) for m, v in masks.items()}


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, params, batch, erase):
  return model.apply({"params": params}, batch, erase=erase)


def _erase(states, mask, centroids_per_layer):
  """Erase spec for the tiny decoder (depth 2) from float[2, C, D] centroids."""
  return {"centroids": jnp.asarray(centroids_per_layer), "active": jnp.ones(2, bool),
          "mask": jnp.asarray(mask)}


def test_masks_split_modalities():
  _, _, batch, _, masks = _setup()
  assert masks["image"].sum() == 2 * 9 and not (masks["image"] & masks["text"]).any()
  assert (masks["image"] | masks["text"]).all()  # no padding in the synthetic batch


def test_one_centroid_per_state_is_identity():
  model, params, batch, states, masks = _setup()
  plain = np.asarray(_logits(model, params, batch, None))
  for modality in ("text", "image"):
    centroids = states[:, masks[modality]]  # every hidden state of that modality, per layer
    out = _logits(model, params, batch, _erase(states, masks[modality], centroids))
    np.testing.assert_allclose(np.asarray(out), plain, atol=1e-5)


def test_erasure_changes_outputs():
  model, params, batch, states, masks = _setup()
  plain = np.asarray(_logits(model, params, batch, None))
  for modality in ("text", "image"):
    pts = states[:, masks[modality]]
    centroids = np.stack([pts[:, :2].mean(1), pts[:, 2:].mean(1)], axis=1)  # 2 crude centroids
    out = np.asarray(_logits(model, params, batch, _erase(states, masks[modality], centroids)))
    assert np.abs(out - plain).max() > 1e-2, modality


def test_erased_cached_decode_matches_recompute():
  model, params, batch, states, masks = _setup()
  pts = states[:, masks["text"]]
  layers = {"centroids": jnp.asarray(pts[:, ::3]), "active": jnp.asarray([False, True])}
  prompt = {k: v[:, :14] for k, v in batch.items() if k not in ("images", "image_positions")}
  prompt.update(images=batch["images"], image_positions=batch["image_positions"])
  out = np.asarray(decoding.erased_generate(model, params, prompt, layers, modality="text",
                                          max_new_tokens=3))
  full = {k: v[:, :17].copy() for k, v in batch.items() if k not in ("images", "image_positions")}
  full.update(images=batch["images"], image_positions=batch["image_positions"])
  full["tokens"][:, 14:] = out
  full["mask_ar"][:, 14:] = 1
  erase = dict(layers, mask=hidden.modality_masks(full)["text"])
  recompute = np.asarray(jnp.argmax(_logits(model, params, full, erase), -1))[:, 13:16]
  np.testing.assert_array_equal(out, recompute)
  plain = np.asarray(decoding.erased_generate(model, params, prompt, None, max_new_tokens=3))
  assert plain.shape == out.shape
