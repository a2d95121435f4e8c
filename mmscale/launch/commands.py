"""A launch as a list of shell commands: printed by `--dry_run`, run one by one otherwise."""

from __future__ import annotations

import dataclasses
import subprocess
import sys


@dataclasses.dataclass(frozen=True)
class Step:
  """One command. `check=False` steps may fail (e.g. 'describe' probing whether a slice exists);
  `unless` is a probe command: when it succeeds the step is skipped (create-or-reuse)."""
  title: str
  command: str
  check: bool = True
  unless: str | None = None


def render(steps: list[Step]) -> str:
  """The dry-run text: every command, in order, with its title as a comment."""
  lines = []
  for step in steps:
    lines.append(f"# {step.title}")
    if step.unless:
      lines.append(f"{step.unless} >/dev/null 2>&1 || \\")
      lines.append(f"  {step.command}")
    else:
      lines.append(step.command)
  return "\n".join(lines) + "\n"


def execute(steps: list[Step]) -> int:
  """Runs the steps with bash, streaming their output; stops at the first failing checked one."""
  for step in steps:
    print(f"# {step.title}\n{step.command}", file=sys.stderr, flush=True)
    if step.unless and subprocess.run(["bash", "-c", step.unless],
                                      capture_output=True).returncode == 0:
      print("#   (exists: skipped)", file=sys.stderr, flush=True)
      continue
    code = subprocess.run(["bash", "-c", step.command]).returncode
    if code and step.check:
      print(f"error: step '{step.title}' failed with exit code {code}", file=sys.stderr)
      return code
  return 0
