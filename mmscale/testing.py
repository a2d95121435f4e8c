"""Tiny model configs and synthetic batches for tests and benchmarks (no data files needed)."""

import jax
import ml_collections
import numpy as np
from flax import linen as nn

from mmscale.config import base_config
from mmscale.data.batch import BatchLayout, one_per_row


def tiny_model_config(connector: str = "mlp", num_tokens: int = 9) -> ml_collections.ConfigDict:
  """The schema's model with a size for CPU tests: 48px images, 3x3 patch grid, 64-wide ViT and
  decoder."""
  model = base_config().model
  model.vit.update(image_size=48, patch_size=16, width=64, depth=2, heads=4, mlp_dim=128)
  model.connector.update(name=connector, num_tokens=num_tokens, hidden_dim=128, depth=1)
  model.decoder.update(vocab_size=128, width=64, depth=2, heads=4, kv_heads=2, mlp_dim=128)
  return model


def synthetic_batch(model_config, batch: int = 2, seq_len: int = 32, num_images: int = 1,
                    seed: int = 0, image_start: int = 1) -> dict:
  """A batch with one example per row: [token, image tokens..., text...], built by the batch
  builder. Each image block has mask_ar 1 on its first token and 0 on the rest (bidirectional);
  text is causal; every target counts. Images are random in [-1, 1]; tokens random in
  [1, vocab)."""
  rng = np.random.default_rng(seed)
  layout = BatchLayout(seq_len=seq_len, max_images=num_images,
                       tokens_per_image=model_config.connector.num_tokens,
                       image_size=model_config.vit.image_size)
  k = layout.tokens_per_image
  tokens = rng.integers(1, model_config.decoder.vocab_size, (batch, seq_len)).astype(np.int32)
  mask_ar = np.ones((seq_len,), np.int32)
  image_positions = np.zeros((num_images * k,), np.int32)
  for m in range(num_images):
    start = image_start + m * k
    image_positions[m * k:(m + 1) * k] = np.arange(start, start + k)
    mask_ar[start + 1:start + k] = 0
  images = rng.uniform(-1, 1, (batch, num_images) + layout.image_shape).astype(np.float32)
  examples = [{"tokens": tokens[r], "mask_ar": mask_ar, "mask_loss": np.ones((seq_len,), np.int32),
               "images": images[r], "image_positions": image_positions} for r in range(batch)]
  return one_per_row(examples, layout)


def numpy_init(model, batch: dict, seed: int = 0, **init_kwargs) -> dict:
  """Variables for `model` drawn with numpy from the abstract shapes (`jax.eval_shape`).

  Tests use this instead of `model.init` because compiling the JAX RNG for every parameter takes
  seconds on a small CPU. Kernels get N(0, 1/fan_in), embeddings N(0, 1/D), norm scales 1,
  biases 0; logical-axis boxes are kept; other collections (e.g. 'cache') are zeros.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), batch, **init_kwargs))

  def fill(path, leaf):
    keys = [str(getattr(p, "key", p)) for p in path]
    boxed = isinstance(leaf, nn.LogicallyPartitioned)
    value = leaf.value if boxed else leaf
    shape, dtype = value.shape, value.dtype
    core = shape[1:] if boxed and leaf.names and leaf.names[0] == "layers" else shape
    if keys[0] != "params" or keys[-1] == "bias":
      arr = np.zeros(shape, dtype)
    elif keys[-1] == "scale":
      arr = np.ones(shape, dtype)
    else:
      if keys[-1] == "embedding":
        fan_in = core[-1]
      elif keys[-2] in ("query", "key", "value"):  # [D, heads, head_dim]
        fan_in = core[0]
      elif keys[-1] == "kernel":  # [in..., out]: dense, out-projection, conv
        fan_in = int(np.prod(core[:-1]))
      else:  # position embeddings, learned queries
        fan_in = 2500
      arr = rng.normal(0.0, fan_in ** -0.5, shape).astype(dtype)
    return leaf.replace_boxed(arr) if boxed else arr

  return jax.tree_util.tree_map_with_path(
      fill, shapes, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def random_run(config, devices=None, workdir: str = "", seed: int = 0):
  """A `Run` of `config` on `devices` whose params are `numpy_init` draws, placed in their
  shardings: the same values on every mesh, so sharded and single-device results compare."""
  from mmscale.data.batch import empty_rows  # pylint: disable=import-outside-toplevel
  from mmscale.parallel import rules as sharding_rules  # pylint: disable=import-outside-toplevel
  from mmscale.runtime import build_run  # pylint: disable=import-outside-toplevel
  run = build_run(config, workdir, devices=devices)
  target = sharding_rules.sharded_abstract(run.abstract_params(), run.mesh, run.rules)
  params = nn.meta.unbox(numpy_init(run.model, empty_rows(run.layout, 1), seed)["params"])
  run.params = jax.device_put(params, jax.tree.map(lambda t: t.sharding, target))
  return run


def data_config(**fields) -> ml_collections.ConfigDict:
  """The schema's `config.data` with `fields` set; `mixture` and `sources` replace the default
  (they are maps of user-chosen names, not merged)."""
  cfg = base_config().data
  for name in ("mixture", "sources"):
    if name in fields:
      cfg[name] = ml_collections.ConfigDict(fields.pop(name))
  cfg.update(fields)
  return cfg


def train_step_for(config, devices):
  """(jitted train step, sharded initial state, mesh, rules) of `config` on `devices`, built as
  the trainer builds them (one validation, one trace of init), for tests that compare meshes."""
  # pylint: disable=import-outside-toplevel
  from mmscale.data.batch import empty_rows
  from mmscale.models.registry import build_model
  from mmscale.parallel import mesh as mesh_lib
  from mmscale.parallel import rules as sharding_rules
  from mmscale.spec import validate
  from mmscale.train import optim
  from mmscale.train.state import create_sharded_state
  from mmscale.train.step import make_train_step
  spec = validate(config, len(devices))
  mesh, rules = mesh_lib.make_mesh(spec.mesh_shape, devices), spec.rules
  model = build_model(config.model)
  tx, schedule = optim.make_optimizer(config.optim, 10, 1)
  example = empty_rows(spec.layout, 1)
  state, shardings = create_sharded_state(
      model, tx, sharding_rules.abstract_params(model, example, mesh, rules), example, mesh,
      rules, jax.random.key(0))
  return make_train_step(model, tx, schedule, config, mesh, rules, shardings), state, mesh, rules
