"""Writes constraints.txt: the tested versions of mmscale's fast-moving stack, from this venv.

  python3 -m venv /tmp/v && /tmp/v/bin/pip install -e '.[test]'   # newest within setup.cfg
  /tmp/v/bin/python -m pytest -n 2 tests                           # must pass
  /tmp/v/bin/python tools/update_constraints.py                    # then commit constraints.txt

setup.cfg keeps compatible ranges; constraints.txt pins what was tested, and CI
(`.ci/run`), `launch/local.sh` and the README's commands install with `-c constraints.txt`.
The pinned names are `mmscale/versions.py:PINNED_PACKAGES`; those not installed here are left
out (e.g. `tensorflow`, which only non-x86-64 hosts install instead of `tensorflow-cpu`).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags, versions  # noqa: E402

HEADER = """\
# Tested versions of mmscale's fast-moving stack; setup.cfg holds the compatible ranges.
# Install with: pip install -c constraints.txt -e '.[test]'
# Regenerate (docs/install.md): python tools/update_constraints.py
"""


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("out", "constraints.txt", "file to write", flag_values=fv)


def render() -> str:
  # Local version labels are dropped: torch's CPU wheel is '2.13.0+cpu', and '==2.13.0' matches
  # it (PEP 440) as well as the index's build.
  lines = [f"{name}=={version.split('+')[0]}" for name in versions.PINNED_PACKAGES
           if (version := versions.installed_version(name))]
  return HEADER + "\n".join(lines) + "\n"


def main(argv):
  fv, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  text = render()
  with open(fv.out, "w") as f:
    f.write(text)
  print(f"wrote {fv.out}: {text.count('==')} pins")


if __name__ == "__main__":
  cli_flags.run(main)
