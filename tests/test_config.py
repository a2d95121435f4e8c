"""Bad configs fail before anything compiles, with an error naming the field."""

import subprocess
import sys

import pytest

from mmscale import config as config_lib
from mmscale.errors import ConfigError
from mmscale.data.batch import BatchLayout
from mmscale.parallel.rules import DEFAULT_RULES
from mmscale.spec import validate


def tiny():
  return config_lib.load_config("configs/world/tiny.py")


def test_tiny_config_resolves_to_a_run_spec_on_8_devices():
  spec = validate(tiny(), 8)
  assert spec.mesh_shape == {"data": 8, "fsdp": 1, "tensor": 1, "expert": 1}
  assert spec.layout == BatchLayout(seq_len=64, max_images=2, tokens_per_image=9, image_size=48)
  assert spec.rules == DEFAULT_RULES and spec.batch_shards == 8


def test_every_pipeline_field_has_a_default_and_can_be_set():
  c = tiny()
  c.data.update(read_threads=4, pack_rows=32, max_image_pixels=1024, skip_check_min_records=10)
  assert validate(c, 8).config.data.pack_rows == 32


@pytest.mark.parametrize("mutate, field, expected", [
    (lambda c: c.mesh.shape.update(data=3), "mesh.shape", "device count 8"),
    (lambda c: c.mesh.shape.update(data=-1, fsdp=-1), "mesh.shape.fsdp", "at most one"),
    (lambda c: c.mesh.shape.update(data=-1, tensor=3), "mesh.shape.data", "not divisible"),
    (lambda c: c.data.update(batch_size=12), "data.batch_size", "data x fsdp = 8"),
    (lambda c: (c.mesh.shape.update(data=2, tensor=4), c.model.decoder.update(heads=6, kv_heads=2)),
     "model.decoder.heads", "tensor axis (4)"),
    (lambda c: c.optim.update(lr_rule="linear"), "optim.lr_rule", "'mm1'"),
    (lambda c: c.model.connector.update(name="qformer"), "model.connector.name", "cabstractor"),
    (lambda c: c.model.vit.update(patch_size=64), "model.vit", "patch_size"),
    (lambda c: c.data.update(seq_len=8), "data.seq_len", "cannot hold"),
    (lambda c: (c.mesh.shape.update(data=2, tensor=4), c.model.decoder.update(heads=8, kv_heads=2)),
     "model.decoder.kv_heads", "tensor axis (4)"),
    (lambda c: c.data.update(resize="squash"), "data.resize", "'crop'"),
    (lambda c: c.data.update(read_threads=0), "data.read_threads", ">= 1"),
    (lambda c: c.data.update(max_skip_fraction=2.0), "data.max_skip_fraction", "[0, 1]"),
    (lambda c: c.eval.update(evals=("vqaa",)), "eval.evals", "'vqaa'"),
])
def test_bad_config_names_the_field(mutate, field, expected):
  c = tiny()
  mutate(c)
  with pytest.raises(ConfigError) as err:
    validate(c, 8)
  assert err.value.field.startswith(field), str(err.value)
  assert expected in str(err.value)


def test_unknown_field_is_rejected():
  c = tiny()
  c.unlock()
  c.train.stpes = 10
  with pytest.raises(ConfigError, match="train.stpes"):
    validate(c, 8)


def test_mm1_learning_rate_rule():
  from mmscale.train.optim import mm1_learning_rate
  # exp(-0.4214 ln(1e9) - 0.5535)
  assert mm1_learning_rate(10**9) == pytest.approx(9.27e-5, rel=1e-2)
  assert mm1_learning_rate(10**7) > mm1_learning_rate(10**9)


def test_config_argument_parsing():
  c = config_lib.load_config("configs/world/tiny.py:mix=vqa,steps=7")
  assert dict(c.data.mixture) == {"vqa": 1.0} and c.train.steps == 7
  with pytest.raises(ConfigError, match="steps"):
    config_lib.load_config("configs/world/tiny.py:stepz=7")
  with pytest.raises(ConfigError, match="expected a value of type int, got 'many'"):
    config_lib.load_config("configs/world/tiny.py:steps=many")
  with pytest.raises(ConfigError, match="'size'.*expected one of"):
    config_lib.load_config("configs/world/tiny.py:size=xl")


def test_cli_bad_config_fails_fast_naming_the_field(tmp_path):
  """The real entry point: exits with a message naming the field, without compiling anything."""
  proc = subprocess.run(
      [sys.executable, "-m", "mmscale.train", "--config=configs/world/tiny.py",
       f"--workdir={tmp_path}", "--config.mesh.shape.tensor=3"],
      capture_output=True, text=True, timeout=120,
      env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "PATH": "/usr/bin:/bin"})
  assert proc.returncode != 0
  assert "mesh.shape.data" in proc.stderr and "not divisible" in proc.stderr, proc.stderr[-2000:]
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_training_start_validates_and_traces_init_once(tiny_world, tmp_path, monkeypatch):
  """The config is validated once (one mesh resolution, one model check) and `model.init` is
  traced once before the step compiles, however many pieces read the run."""
  import collections  # pylint: disable=import-outside-toplevel
  from conftest import tiny_train_config  # pylint: disable=import-outside-toplevel
  from mmscale import runtime, spec  # pylint: disable=import-outside-toplevel
  from mmscale.parallel import rules as sharding_rules  # pylint: disable=import-outside-toplevel
  from mmscale.train import trainer  # pylint: disable=import-outside-toplevel
  calls = collections.Counter()

  def counted(module, name):
    fn = getattr(module, name)
    def wrapped(*args, **kwargs):
      calls[name] += 1
      return fn(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapped)

  counted(spec, "resolve_mesh_shape")
  counted(spec, "validate_model_config")
  counted(runtime, "validate")
  counted(sharding_rules, "abstract_params")
  trainer.train(tiny_train_config(tiny_world, steps=1, checkpoint_every=1), str(tmp_path))
  assert calls == {"resolve_mesh_shape": 1, "validate_model_config": 1, "validate": 1,
                   "abstract_params": 1}, calls
