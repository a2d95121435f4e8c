"""MLLM behaviour: shapes per connector, gradients, masking, packing, KV-cache decode, sharding.

Compiles dominate the run time on a small CPU, so the forward tests share one batch shape
(B=4, T=24, M=1) and one jitted apply, and params come from `numpy_init` (no RNG compile).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmscale.models import build_model, get_connector
from mmscale.testing import numpy_init, synthetic_batch, tiny_model_config

CONNECTOR_TOKENS = {"mlp": 9, "avgpool": 4, "attnpool": 4, "cabstractor": 4}
B, T = 4, 24


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, batch):
  return model.apply(variables, batch)


@functools.lru_cache(maxsize=None)
def _base():
  """The tiny mlp-connector model, its params and a batch with an image prefix at 1..9."""
  cfg = tiny_model_config()
  model = build_model(cfg)
  batch = synthetic_batch(cfg, batch=B, seq_len=T)
  return cfg, model, numpy_init(model, batch), batch


def _logits(batch):
  _, model, variables, _ = _base()
  return np.asarray(_apply(model, variables, batch))


@pytest.mark.parametrize("name", sorted(CONNECTOR_TOKENS))
def test_connector_shapes_and_gradients(name):
  cfg = tiny_model_config(name, CONNECTOR_TOKENS[name])
  batch = synthetic_batch(cfg, batch=2, seq_len=T, num_images=2)
  model = build_model(cfg)
  logits = jax.eval_shape(lambda: model.apply(numpy_init(model, batch), batch))
  assert logits.shape == (2, T, cfg.decoder.vocab_size) and logits.dtype == jnp.float32
  images = jax.ShapeDtypeStruct(batch["images"].shape, jnp.float32)
  shapes = jax.eval_shape(lambda x: model.apply(numpy_init(model, batch), x,
                                                method=model.encode_images), images)
  assert shapes.shape == (2, 2 * cfg.connector.num_tokens, cfg.decoder.width)

  connector = get_connector(name)(num_tokens=cfg.connector.num_tokens, hidden_dim=32, out_dim=48,
                                  num_heads=4, depth=1)
  patches = np.random.default_rng(0).normal(size=(3, 9, 64)).astype(np.float32)
  params = numpy_init(connector, patches)["params"]
  out, grads = jax.jit(lambda p: (connector.apply({"params": p}, patches), jax.grad(
      lambda q: jnp.mean(jnp.sin(connector.apply({"params": q}, patches))))(p)))(params)
  assert out.shape == (3, cfg.connector.num_tokens, 48)
  for path, g in jax.tree_util.tree_leaves_with_path(nn.unbox(grads)):
    assert float(jnp.abs(g).max()) > 0, f"no gradient for {name} param {path}"


def test_causal_masking():
  _, _, _, batch = _base()
  changed = dict(batch, tokens=batch["tokens"].copy())
  changed["tokens"][:, 15] = (changed["tokens"][:, 15] % 100) + 1
  a, b = _logits(batch), _logits(changed)
  np.testing.assert_allclose(a[:, :15], b[:, :15], atol=1e-5)
  assert np.abs(a[:, 15:] - b[:, 15:]).max() > 1e-3


def test_prefix_block_is_bidirectional():
  """Image tokens 1..9 plus a question 10..12 with mask_ar 0 form one prefix block: the first
  image token sees the last question token; with mask_ar all 1 it does not."""
  _, _, _, batch = _base()
  prefix = dict(batch, mask_ar=batch["mask_ar"].copy())
  prefix["mask_ar"][:, 10:13] = 0
  changed = {k: v.copy() for k, v in prefix.items()}
  changed["tokens"][:, 12] = (changed["tokens"][:, 12] % 100) + 1
  a, b = _logits(prefix), _logits(changed)
  np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-5)  # before the block
  assert np.abs(a[:, 1] - b[:, 1]).max() > 1e-4
  causal = lambda x: dict(x, mask_ar=np.ones_like(x["mask_ar"]))  # noqa: E731
  np.testing.assert_allclose(_logits(causal(prefix))[:, :12], _logits(causal(changed))[:, :12],
                             atol=1e-5)


def test_packed_segments_are_isolated():
  """Row 0 packs example one (8 text tokens) and two (16 tokens with an image); rows 1 and 2
  hold each alone, right-padded with segment 0. The logits of each example agree."""
  cfg, _, _, batch = _base()
  t1, t2 = 8, 16
  one = synthetic_batch(cfg, batch=1, seq_len=t1, num_images=0, seed=1)
  two = synthetic_batch(cfg, batch=1, seq_len=t2, num_images=1, seed=2)
  pad = lambda x, n: np.pad(x, ((0, 0), (0, n)))  # noqa: E731
  rows = {k: np.concatenate([np.concatenate([one[k], two[k]], 1), pad(one[k], t2),
                             pad(two[k], t1), batch[k][:1]])
          for k in ("tokens", "positions", "mask_ar")}
  rows["segment_ids"] = np.array([[1] * t1 + [2] * t2, [1] * t1 + [0] * t2,
                                  [1] * t2 + [0] * t1, [1] * T], np.int32)
  rows["images"] = np.concatenate([two["images"], np.zeros_like(two["images"]), two["images"],
                                   batch["images"][:1]])
  rows["image_positions"] = np.concatenate([two["image_positions"] + t1, np.full((1, 9), T),
                                            two["image_positions"], batch["image_positions"][:1]])
  out = _logits(rows)
  np.testing.assert_allclose(out[0, :t1], out[1, :t1], atol=1e-4)
  np.testing.assert_allclose(out[0, t1:], out[2, :t2], atol=1e-4)


def _stack_layers(params, depth):
  """Scanned decoder params -> the layers_i params of the unscanned decoder."""
  dec = dict(params["decoder"])
  stacked = nn.unbox(dec.pop("layers"))
  for i in range(depth):
    dec[f"layers_{i}"] = jax.tree.map(lambda x: x[i], stacked)
  return dict(params, decoder=dec)


@pytest.mark.parametrize("scan", [True, False])
def test_kv_cache_decode_matches_full_forward(scan):
  """Prefill 12 tokens (with the image), then 12 single-token steps, equal the full forward.
  The loop variant gets the scanned params unstacked, so it also checks scan == loop."""
  cfg, _, variables, batch = _base()
  batch = {k: v.copy() for k, v in batch.items()}
  batch["segment_ids"][1, -3:] = 0  # right padding in row 1: never attended by real tokens
  full = _logits(batch)
  params = variables["params"]
  if not scan:
    cfg = tiny_model_config()
    cfg.decoder.scan_layers = False
    params = _stack_layers(nn.unbox(params), cfg.decoder.depth)
  model = build_model(cfg)
  cache = numpy_init(model, batch, decode=True)["cache"]
  prompt_len = 12
  prompt = {k: v[:, :prompt_len] for k, v in batch.items() if k != "images"}
  prompt["images"], prompt["image_positions"] = batch["images"], batch["image_positions"]
  step_fn = jax.jit(lambda c, b: model.apply({"params": params, "cache": c}, b, decode=True,
                                             mutable=["cache"]))
  logits, mutated = step_fn(cache, prompt)
  np.testing.assert_allclose(logits, full[:, :prompt_len], atol=1e-4)
  cache = mutated["cache"]
  for t in range(prompt_len, T):
    step = {k: batch[k][:, t:t + 1] for k in ("tokens", "positions", "segment_ids")}
    logits, mutated = step_fn(cache, step)
    cache = mutated["cache"]
    real = batch["segment_ids"][:, t] != 0
    np.testing.assert_allclose(logits[real, 0], full[real, t], atol=1e-4)


def gemma_like_config():
  """The tiny model with every Gemma variant on: a window of 4 key slots on local layers (the
  second of every 2 global), local RoPE base, soft-caps, (1 + scale) and sandwich norms."""
  cfg = tiny_model_config()
  cfg.decoder.update(norm_scale_plus_one=True, post_norms=True, mlp_activation="gelu_tanh",
                     query_pre_attn_scalar=8.0, attn_logit_softcap=5.0,
                     final_logit_softcap=3.0, sliding_window=4, global_every=2,
                     rope_local_theta=100.0, qk_norm=True, causal_only=True)
  return cfg


def test_sliding_window_decode_matches_full_forward():
  """A KV-cache decode (prefill 12, then single steps past the window) equals the full forward
  with the window: the window counts cache slots, so cached steps drop the same keys."""
  cfg = gemma_like_config()
  model = build_model(cfg)
  batch = synthetic_batch(cfg, batch=B, seq_len=T)
  params = numpy_init(model, batch)["params"]
  full = np.asarray(_apply(model, {"params": params}, batch))
  no_window = tiny_model_config()
  no_window.decoder.update(dict(cfg.decoder), sliding_window=0, global_every=0,
                           rope_local_theta=0.0)
  wide = np.asarray(_apply(build_model(no_window), {"params": params}, batch))
  assert np.abs(wide[:, 8:] - full[:, 8:]).max() > 1e-3  # the window changes the logits
  cache = numpy_init(model, batch, decode=True)["cache"]
  prompt = {k: v[:, :12] for k, v in batch.items() if k != "images"}
  prompt["images"], prompt["image_positions"] = batch["images"], batch["image_positions"]
  step_fn = jax.jit(lambda c, b: model.apply({"params": params, "cache": c}, b, decode=True,
                                             mutable=["cache"]))
  logits, mutated = step_fn(cache, prompt)
  np.testing.assert_allclose(logits, full[:, :12], atol=1e-4)
  cache = mutated["cache"]
  for t in range(12, 16):
    step = {k: batch[k][:, t:t + 1] for k in ("tokens", "positions", "segment_ids")}
    logits, mutated = step_fn(cache, step)
    cache = mutated["cache"]
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-4)


def test_remat_policy_keeps_loss_and_grads():
  """Text-only batch (the image path is skipped): remat changes memory, not numbers."""
  cfg, model, variables, batch = _base()
  text = {k: batch[k][:2, :16] for k in ("tokens", "positions", "segment_ids", "mask_ar")}
  cfg = tiny_model_config()
  cfg.decoder.remat_policy = "dots_saveable"
  remat = build_model(cfg)
  both = jax.jit(lambda p: [jax.value_and_grad(
      lambda q: jnp.mean(m.apply({"params": q}, text) ** 2))(p) for m in (model, remat)])
  (l0, g0), (l1, g1) = both(variables["params"])
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g0, g1)
  assert float(jnp.abs(nn.unbox(g0)["decoder"]["embedding"]["embedding"]).max()) > 0


def test_bf16_untied_sincos_cabstractor():
  cfg = tiny_model_config("cabstractor", 4)
  cfg.dtype = "bfloat16"
  cfg.decoder.tie_embeddings = False
  cfg.vit.posemb = "sincos2d"
  batch = synthetic_batch(cfg, batch=2, seq_len=16)
  model = build_model(cfg)
  variables = numpy_init(model, batch)
  assert "unembed" in variables["params"]["decoder"]
  assert "pos_embedding" not in variables["params"]["vit"]
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nn.unbox(variables["params"])))
  out = _apply(model, variables, batch)
  assert out.dtype == jnp.float32 and bool(jnp.isfinite(out).all())


@pytest.mark.parametrize("name", sorted(CONNECTOR_TOKENS))
def test_every_param_has_logical_axes(name):
  cfg = tiny_model_config(name, CONNECTOR_TOKENS[name])
  cfg.decoder.tie_embeddings = False
  batch = synthetic_batch(cfg, seq_len=16)
  shapes = jax.eval_shape(build_model(cfg).init, jax.random.key(0), batch)["params"]
  boxed = jax.tree_util.tree_leaves_with_path(
      shapes, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  for path, leaf in boxed:
    assert isinstance(leaf, nn.LogicallyPartitioned), f"{path} has no logical axis names"
    assert len(leaf.names) == len(leaf.value.shape), f"{path}: {leaf.names} {leaf.value.shape}"
    assert any(n is not None for n in leaf.names), f"{path}: only None axes"


RULES = (("activation_batch", ("data", "fsdp")), ("activation_length", None),
         ("activation_embed", None), ("activation_mlp", "tensor"),
         ("activation_heads", "tensor"), ("activation_kv", None), ("activation_vocab", "tensor"),
         ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"), ("kv_heads", "tensor"),
         ("kv", None), ("vocab", "tensor"), ("layers", None), ("patches", None),
         ("conv_in", None), ("conv_out", None))


def test_sharded_forward_matches_unsharded():
  """Params placed by their logical names on a 2x2x2 Auto mesh give the same logits."""
  _, model, variables, batch = _base()
  expected = _logits(batch)
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(variables), mesh, RULES)
    sharded = jax.device_put(variables, shardings)
    q = sharded["params"]["decoder"]["layers"]["attn"]["query"]["kernel"].value
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    got = jax.jit(model.apply)(sharded, batch)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)
