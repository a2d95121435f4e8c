"""MLLM behaviour: shapes per connector, gradients, masking, packing, KV-cache decode, sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmscale.models import build_model, get_connector
from mmscale.models.testing import synthetic_batch, tiny_model_config

CONNECTOR_TOKENS = {"mlp": 9, "avgpool": 4, "attnpool": 4, "cabstractor": 4}


def _init(cfg, batch, **kw):
  model = build_model(cfg)
  return model, model.init(jax.random.key(0), batch, **kw)


def _logits(model, variables, batch, **kw):
  return np.asarray(jax.jit(lambda v, b: model.apply(v, b, **kw))(variables, batch))


@pytest.mark.parametrize("name", sorted(CONNECTOR_TOKENS))
def test_connector_shapes_and_gradients(name):
  cfg = tiny_model_config(name, CONNECTOR_TOKENS[name])
  batch = synthetic_batch(cfg, batch=2, seq_len=24, num_images=2)
  model, variables = _init(cfg, batch)
  params = variables["params"]
  tokens = model.apply(variables, jnp.asarray(batch["images"]), method=model.encode_images)
  assert tokens.shape == (2, 2 * cfg.connector.num_tokens, cfg.decoder.width)

  def loss(p):
    return jnp.mean(model.apply({"params": p}, batch) ** 2)

  logits = model.apply(variables, batch)
  assert logits.shape == (2, 24, cfg.decoder.vocab_size) and logits.dtype == jnp.float32
  grads = nn.unbox(jax.grad(loss)(params))
  for path, g in jax.tree_util.tree_leaves_with_path(grads["connector"]):
    assert float(jnp.abs(g).max()) > 0, f"no gradient for connector param {path}"
  assert float(jnp.abs(grads["vit"]["patch_embed"]["kernel"]).max()) > 0


def test_causal_masking():
  cfg = tiny_model_config()
  batch = synthetic_batch(cfg, seq_len=24)
  model, variables = _init(cfg, batch)
  changed = dict(batch, tokens=batch["tokens"].copy())
  changed["tokens"][:, 15] = (changed["tokens"][:, 15] % 100) + 1
  a, b = _logits(model, variables, batch), _logits(model, variables, changed)
  np.testing.assert_allclose(a[:, :15], b[:, :15], atol=1e-5)
  assert np.abs(a[:, 15:] - b[:, 15:]).max() > 1e-3


def test_image_prefix_is_bidirectional():
  """Image tokens (positions 1..9, mask_ar 1,0,...,0) see each other; text stays causal."""
  cfg = tiny_model_config()
  batch = synthetic_batch(cfg, seq_len=16)  # image tokens at 1..9
  model, variables = _init(cfg, batch)
  other = dict(batch, images=batch["images"].copy())
  other["images"][:, :, 32:, 32:] *= -1.0  # changes the last patch: image token 9 only (mlp)
  a, b = _logits(model, variables, batch), _logits(model, variables, other)
  np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-5)  # before the image
  assert np.abs(a[:, 1] - b[:, 1]).max() > 1e-4  # first image token sees the last one
  causal = dict(other, mask_ar=np.ones_like(batch["mask_ar"]))
  c, d = _logits(model, variables, dict(batch, mask_ar=causal["mask_ar"])), _logits(
      model, variables, causal)
  np.testing.assert_allclose(c[:, :9], d[:, :9], atol=1e-5)


def test_packed_segments_are_isolated():
  cfg = tiny_model_config()
  k, t1, t2 = 9, 8, 16
  one = synthetic_batch(cfg, batch=1, seq_len=t1, num_images=0, seed=1)
  two = synthetic_batch(cfg, batch=1, seq_len=t2, num_images=1, seed=2)
  packed = {key: np.concatenate([one[key], two[key]], axis=1)
            for key in ("tokens", "positions", "mask_ar")}
  packed["segment_ids"] = np.array([[1] * t1 + [2] * t2], np.int32)
  packed["images"] = two["images"]
  packed["image_positions"] = two["image_positions"] + t1
  model, variables = _init(cfg, packed)
  full = _logits(model, variables, packed)
  np.testing.assert_allclose(full[:, :t1], _logits(model, variables, one), atol=1e-4)
  np.testing.assert_allclose(full[:, t1:], _logits(model, variables, two), atol=1e-4)
  assert k == cfg.connector.num_tokens


@pytest.mark.parametrize("scan", [True, False])
def test_kv_cache_decode_matches_full_forward(scan):
  cfg = tiny_model_config()
  cfg.decoder.scan_layers = scan
  length, prompt_len = 20, 12
  batch = synthetic_batch(cfg, seq_len=length)
  batch["segment_ids"][1, -3:] = 0  # right padding in row 1 (never attended by real tokens)
  model, variables = _init(cfg, batch)
  full = _logits(model, variables, batch)
  cache = model.init(jax.random.key(0), batch, decode=True)["cache"]
  prompt = {k: v[:, :prompt_len] for k, v in batch.items() if k != "images"}
  prompt["images"], prompt["image_positions"] = batch["images"], batch["image_positions"]

  step_fn = jax.jit(lambda c, b: model.apply({"params": variables["params"], "cache": c}, b,
                                             decode=True, mutable=["cache"]))
  logits, mutated = step_fn(cache, prompt)
  np.testing.assert_allclose(logits, full[:, :prompt_len], atol=1e-4)
  cache = mutated["cache"]
  for t in range(prompt_len, length):
    step = {k: batch[k][:, t:t + 1] for k in ("tokens", "positions", "segment_ids")}
    logits, mutated = step_fn(cache, step)
    cache = mutated["cache"]
    real = batch["segment_ids"][:, t] != 0
    np.testing.assert_allclose(logits[real, 0], full[real, t], atol=1e-4)


def test_scan_and_loop_agree_with_stacked_params():
  cfg = tiny_model_config()
  batch = synthetic_batch(cfg, seq_len=16)
  loop_cfg = tiny_model_config()
  loop_cfg.decoder.scan_layers = False
  loop_model, loop_vars = _init(loop_cfg, batch)
  params = nn.unbox(loop_vars["params"])
  dec = dict(params["decoder"])
  layers = [dec.pop(f"layers_{i}") for i in range(cfg.decoder.depth)]
  dec["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
  scan_model = build_model(cfg)
  np.testing.assert_allclose(_logits(scan_model, {"params": dict(params, decoder=dec)}, batch),
                             _logits(loop_model, loop_vars, batch), atol=1e-5)


def test_remat_and_untied_and_bf16():
  batch = synthetic_batch(tiny_model_config(), seq_len=16)
  base_model, variables = _init(tiny_model_config(), batch)
  cfg = tiny_model_config()
  cfg.decoder.remat_policy = "dots_saveable"
  remat_model = build_model(cfg)
  loss = lambda m: jax.value_and_grad(  # noqa: E731
      lambda p: jnp.mean(m.apply({"params": p}, batch) ** 2))(variables["params"])
  (l0, g0), (l1, g1) = loss(base_model), loss(remat_model)
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g0, g1)

  cfg = tiny_model_config("cabstractor", 4)
  cfg.dtype = "bfloat16"
  cfg.decoder.tie_embeddings = False
  cfg.vit.posemb = "sincos2d"
  model, v = _init(cfg, batch | {"image_positions": batch["image_positions"][:, :4]})
  assert "unembed" in v["params"]["decoder"] and "pos_embedding" not in v["params"]["vit"]
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nn.unbox(v["params"])))
  out = model.apply(v, batch | {"image_positions": batch["image_positions"][:, :4]})
  assert out.dtype == jnp.float32 and bool(jnp.isfinite(out).all())


@pytest.mark.parametrize("name", sorted(CONNECTOR_TOKENS))
def test_every_param_has_logical_axes(name):
  cfg = tiny_model_config(name, CONNECTOR_TOKENS[name])
  batch = synthetic_batch(cfg, seq_len=16)
  shapes = jax.eval_shape(build_model(cfg).init, jax.random.key(0), batch)["params"]
  boxed = jax.tree_util.tree_leaves_with_path(
      shapes, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  for path, leaf in boxed:
    assert isinstance(leaf, nn.LogicallyPartitioned), f"{path} has no logical axis names"
    names = leaf.names
    assert len(names) == len(leaf.value.shape), f"{path}: {names} vs {leaf.value.shape}"
    assert any(n is not None for n in names), f"{path}: only None axes"
  assert get_connector(name) is not None


RULES = (("activation_batch", ("data", "fsdp")), ("activation_length", None),
         ("activation_embed", None), ("activation_mlp", "tensor"),
         ("activation_heads", "tensor"), ("activation_kv", None), ("activation_vocab", "tensor"),
         ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"), ("kv_heads", "tensor"),
         ("kv", None), ("vocab", "tensor"), ("layers", None), ("patches", None),
         ("conv_in", None), ("conv_out", None))


def test_sharded_forward_matches_unsharded():
  """Params created sharded from their logical names on a 2x2x2 Auto mesh give the same logits."""
  cfg = tiny_model_config("attnpool", 4)
  batch = synthetic_batch(cfg, batch=4, seq_len=16)
  model, variables = _init(cfg, batch)
  expected = _logits(model, variables, batch)
  axes = ("data", "fsdp", "tensor")
  mesh = jax.make_mesh((2, 2, 2), axes, axis_types=(jax.sharding.AxisType.Auto,) * 3)
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(variables), mesh, RULES)
    sharded = jax.jit(lambda: model.init(jax.random.key(0), batch), out_shardings=shardings)()
    q = sharded["params"]["decoder"]["layers"]["attn"]["query"]["kernel"].value
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    got = jax.jit(model.apply)(sharded, batch)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)
