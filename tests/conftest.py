"""Test setup: 8 simulated CPU devices, set before JAX is first imported."""

import os
import tempfile

# LLVM optimisation level 0 for the CPU programs: the tests run a few steps of tiny models, whose
# time is mostly compiling (a third less at level 0); numerics stay within the tests' tolerances.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests compile the same tiny train step (and their subprocesses inherit this): JAX's
# persistent compilation cache, shared by the xdist workers and kept between runs, compiles each
# program once. Keys cover the program, devices, flags and versions, so a hit is the same binary.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"mmscale-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 1024 ** 3))
# No test reaches a cloud service: Google's auth libraries neither probe for a metadata server
# (and would look for one on loopback only), and gcsfs skips its bucket-layout query (the gs://
# tests run a local emulator: tests/gcs_helpers.py).
os.environ.update(NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:9",
                  GCE_METADATA_IP="127.0.0.1:9", GCE_METADATA_ROOT="127.0.0.1:9",
                  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")

import jax  # noqa: E402  pylint: disable=wrong-import-position

assert jax.device_count() == 8, "tests need 8 simulated devices; was jax imported before conftest?"

import pytest  # noqa: E402  pylint: disable=wrong-import-position


def pytest_collection_modifyitems(items):
  """Tests marked `slow` first (stable otherwise): xdist's workers start the long ones early
  instead of one of them finishing the run alone."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
  """A small knowledge world (every arm, eval set, tokenizer), built once per test session."""
  from mmscale.data.world import build_world  # pylint: disable=import-outside-toplevel
  out = str(tmp_path_factory.mktemp("world"))
  build_world(out, num_scenes=400, num_eval_scenes=30, seed=0)
  return out


def tiny_train_config(world_dir: str, **train_overrides):
  """configs/world/tiny.py shrunk for tests: a 64-wide model, a few steps, on 8 devices."""
  from mmscale import config as config_lib  # pylint: disable=import-outside-toplevel
  c = config_lib.load_config("configs/world/tiny.py")
  c.data.world_dir = world_dir
  c.data.batch_size = 16
  c.model.vit.update(width=64, depth=1, mlp_dim=128)
  c.model.connector.update(hidden_dim=128)
  c.model.decoder.update(width=64, depth=2, mlp_dim=128)
  c.optim.update(lr=3e-3, warmup_steps=5)
  c.train.update(steps=40, log_every=1, checkpoint_every=10, keep_checkpoints=10,
                 peak_flops_per_device=1e11)
  c.eval.update(batch_size=32, max_examples=64, loss_batches=1)
  c.train.update(**train_overrides)
  return c


@pytest.fixture()
def image_dir(tmp_path):
  """A folder with one 30 x 20 grey PNG, a.png: the image of local evaluation files."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "a.png")
  return tmp_path


def write_json(path, obj) -> str:
  """Writes `obj` as JSON to `path` (a pathlib.Path); returns the path as a string."""
  import json  # pylint: disable=import-outside-toplevel
  path.write_text(json.dumps(obj))
  return str(path)


def load_bench_module(name: str):
  """The module of `bench/<name>.py` (bench/ is scripts, not a package)."""
  import importlib.util  # noqa: PLC0415
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                      f"{name}.py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
