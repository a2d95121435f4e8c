"""constraints.txt pins versions inside setup.cfg's ranges, and is what the update tool writes."""

import configparser
import os
import runpy

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mmscale import versions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins() -> dict[str, str]:
  pins = {}
  with open(os.path.join(ROOT, "constraints.txt")) as f:
    for line in f:
      line = line.split("#")[0].strip()
      if line:
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version
  return pins


def _declared() -> list[Requirement]:
  cfg = configparser.ConfigParser()
  cfg.read(os.path.join(ROOT, "setup.cfg"))
  lines = cfg["options"]["install_requires"].splitlines()
  for extra in cfg["options.extras_require"].values():
    lines += extra.splitlines()
  return [Requirement(line) for line in lines if line.strip() and not line.startswith("mmscale")]


def test_every_pin_is_a_known_package_within_setup_cfg_ranges():
  pins = _pins()
  assert set(pins) <= {canonicalize_name(n) for n in versions.PINNED_PACKAGES}
  assert {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "clu"} <= set(pins)
  for req in _declared():
    name = canonicalize_name(req.name)
    if name in pins:
      assert req.specifier.contains(pins[name], prereleases=True), (
          f"constraints.txt pins {name}=={pins[name]} outside setup.cfg's {req}")


def test_update_tool_renders_installed_versions(tmp_path):
  tool = runpy.run_path(os.path.join(ROOT, "tools", "update_constraints.py"), run_name="tool")
  out = tmp_path / "c.txt"
  tool["main"](["update_constraints", f"--out={out}"])
  rendered = out.read_text()
  assert f"jax=={versions.installed_version('jax')}\n" in rendered
  assert rendered.startswith("# Tested versions")


def test_libtpu_is_the_release_jax_tpu_pins():
  """A libtpu newer than jax's `tpu` extra loads a profiler plugin of another size and
  jax.profiler.start_trace segfaults, on CPU too; the test extra must stay on jax's pin."""
  from importlib import metadata
  wanted = [Requirement(r) for r in metadata.requires("jax") or ()
            if r.startswith("libtpu") and 'extra == "tpu"' in r]
  assert wanted, "jax declares no libtpu for its tpu extra"
  declared = [r for r in _declared() if canonicalize_name(r.name) == "libtpu"]
  assert declared and all(str(r.specifier) == str(wanted[0].specifier) for r in declared), (
      declared, wanted)
  pins = _pins()
  if "libtpu" in pins:
    assert wanted[0].specifier.contains(pins["libtpu"])
