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
