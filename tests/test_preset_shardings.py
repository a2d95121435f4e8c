"""Under fsdp, no sizeable parameter or optimizer-state tensor of any preset is left whole on
every device (abstract: eval_shape + the sharding rules on the simulated mesh, nothing compiled)."""

import jax
import pytest

from mmscale import config as config_lib
from mmscale.data.batch import empty_rows
from mmscale.models import flops as flops_lib
from mmscale.models.registry import build_model
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules
from mmscale.spec import validate
from mmscale.train import optim
from mmscale.train.state import sharded_abstract_state

MIN_ELEMENTS = 1 << 16  # smaller tensors (norm scales, biases) may stay replicated


def _point_sizes():
  spec = __import__("importlib.util").util.spec_from_file_location(
      "mmscale_point_config", "configs/scaling/point.py")
  module = __import__("importlib.util").util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return sorted(module.SIZES)


def unsplit_tensors(size: str) -> list[str]:
  """Paths (with shapes) of the train state's tensors of >= MIN_ELEMENTS that fsdp leaves whole,
  with the preset's mesh made fully sharded (data folded into fsdp; tensor kept)."""
  c = config_lib.load_config(f"configs/scaling/point.py:size={size}")
  c.mesh.shape = {"data": 1, "fsdp": -1, "tensor": c.mesh.shape.get("tensor", 1), "expert": 1}
  c.data.batch_size = max(8, c.data.batch_size)
  spec = validate(c, jax.device_count())
  mesh = mesh_lib.make_mesh(spec.mesh_shape)
  model = build_model(c.model)
  boxed = sharding_rules.abstract_params(model, empty_rows(spec.layout, 1), mesh, spec.rules)
  tx, _ = optim.make_optimizer(c.optim, 10, flops_lib.param_count(boxed))
  state, _ = sharded_abstract_state(tx, boxed, mesh, spec.rules)
  out = []
  for path, x in jax.tree_util.tree_leaves_with_path(state):
    spec_axes = [a for dim in x.sharding.spec for a in
                 ((dim,) if isinstance(dim, str) else (dim or ()))]
    if x.size >= MIN_ELEMENTS and "fsdp" not in spec_axes:
      out.append(f"{jax.tree_util.keystr(path)} {x.shape} {x.sharding.spec}")
  return out


@pytest.mark.parametrize("size", _point_sizes())
def test_every_large_state_tensor_is_split_over_fsdp(size):
  assert unsplit_tensors(size) == []
