"""Model config validation (errors name the field), the model registry, FLOPs and param counts."""

import jax
import pytest

from mmscale.errors import ConfigError
from mmscale.models import build_model, param_count, train_flops_per_sequence, validate_model_config
from mmscale.testing import synthetic_batch, tiny_model_config


def _set(cfg, path, value):
  node = cfg
  *parents, leaf = path.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  return cfg


@pytest.mark.parametrize("path,value,field", [
    ("vit.image_size", 8, "model.vit.image_size"),
    ("vit.heads", 5, "model.vit.heads"),
    ("vit.posemb", "rope", "model.vit.posemb"),
    ("vit.depth", 0, "model.vit.depth"),
    ("decoder.kv_heads", 3, "model.decoder.kv_heads"),
    ("decoder.remat_policy", "sometimes", "model.decoder.remat_policy"),
    ("decoder.vocab_size", None, "model.decoder.vocab_size"),
    ("connector.name", "qformer", "model.connector.name"),
    ("connector.num_tokens", 4, "model.connector.num_tokens"),  # mlp needs K == P = 9
    ("dtype", "float64", "model.dtype"),
    ("name", "gpt", "model.name"),
    ("vit.activation", "relu", "model.vit.activation"),
    ("vit.pixel_std", (0.5, 0.0, 0.5), "model.vit.pixel_std"),
    ("decoder.mlp_activation", "swish", "model.decoder.mlp_activation"),
    ("decoder.sliding_window", -4, "model.decoder.sliding_window"),
    ("decoder.global_every", 2, "model.decoder.global_every"),  # with no sliding window
    ("decoder.attn_logit_softcap", -1.0, "model.decoder.attn_logit_softcap"),
])
def test_validation_names_the_field(path, value, field):
  cfg = _set(tiny_model_config(), path, value)
  with pytest.raises(ConfigError) as err:
    validate_model_config(cfg)
  assert err.value.field == field and field in str(err.value)


@pytest.mark.parametrize("name,tokens,ok", [
    ("avgpool", 4, True), ("avgpool", 9, True), ("avgpool", 5, False), ("avgpool", 16, False),
    ("cabstractor", 1, True), ("cabstractor", 8, False), ("attnpool", 7, True),
    ("mlp", 9, True), ("mlp", 10, False)])
def test_connector_token_rules(name, tokens, ok):
  cfg = tiny_model_config(name, tokens)  # 3x3 patch grid
  if ok:
    validate_model_config(cfg)
  else:
    with pytest.raises(ConfigError, match="model.connector.num_tokens"):
      validate_model_config(cfg)


def test_unknown_connector_lists_known_ones():
  with pytest.raises(ConfigError, match="cabstractor"):
    validate_model_config(tiny_model_config("perceiver", 4))


def test_build_model_is_hashable_and_leaves_config_alone():
  cfg = tiny_model_config()
  before = cfg.to_dict()
  a, b = build_model(cfg), build_model(cfg)
  assert hash(a) == hash(b) and a == b  # usable as a static jit argument
  assert cfg.to_dict() == before


def test_flops_positive_and_scaling():
  cfg = tiny_model_config()
  f1 = train_flops_per_sequence(cfg, 64, 1)
  f2 = train_flops_per_sequence(cfg, 128, 1)
  assert 0 < f1 < f2 < 4 * f1
  assert train_flops_per_sequence(cfg, 64, 2) > f1
  # decoder-only part ~ 6 * params * tokens for long-ish sequences (attention adds a bit)
  params = jax.eval_shape(build_model(cfg).init, jax.random.key(0),
                          synthetic_batch(cfg, seq_len=16))["params"]
  dec = param_count(params["decoder"])
  text_only = train_flops_per_sequence(cfg, 64, 0)
  assert 6 * dec * 64 * 0.9 < text_only < 6 * dec * 64 * 1.6
  for name, k in (("avgpool", 4), ("attnpool", 4), ("cabstractor", 4)):
    assert train_flops_per_sequence(tiny_model_config(name, k), 64, 1) > text_only


def test_fused_kernels_refuse_gemma_score_terms():
  """Soft-capping, sliding windows and a query scale are computed by the XLA reference only:
  'splash' / 'cudnn' fail naming model.attention; 'auto' picks the reference."""
  cfg = tiny_model_config()
  cfg.decoder.sliding_window = 4
  cfg.attention = "splash"
  with pytest.raises(ConfigError, match="model.attention.*sliding_window"):
    validate_model_config(cfg)
  cfg.attention = "auto"
  validate_model_config(cfg)
