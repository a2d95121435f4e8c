"""absl flags for mmscale's command-line tools, each parsed on a `flags.FlagValues()` of its own.

  def define_flags(fv):                 # flags.DEFINE_*(..., flag_values=fv)
    ...
  def main(argv):                       # argv as app.run gives it: [program, *args]
    fv, argv = cli_flags.parse(define_flags, argv, doc=__doc__)  # argv: [program, *positional]
    ...
  if __name__ == "__main__":
    cli_flags.run(main)

Why a fresh holder per parse and not absl's global FLAGS: tests import several tools into one
process (two of them defining `--out` on the global holder raise DuplicateFlagError) and call
`main(argv)` more than once (a reparsed holder keeps the previous call's values and appends to its
multi flags; a fresh one starts from the defaults). `--help` prints the docstring and the flags;
a bad command line is one `error: ...` line on stderr and exit status 2.
"""

from __future__ import annotations

import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags

HELP_ARGS = ("-h", "-help", "--help", "--helpshort", "--helpfull")
USAGE_ERROR = 2  # the exit status of a command-line mistake, as argparse and getopt tools use


def usage_error(message: str) -> NoReturn:
  """One `error: MESSAGE` line on stderr, then exit status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(USAGE_ERROR)


def parse(define: Callable[[flags.FlagValues], None], argv: Sequence[str], *, doc: str = "",
          positional: bool = False, known_only: bool = False,
          stop_at_positional: bool = False) -> tuple[flags.FlagValues, list[str]]:
  """Defines the flags on a fresh holder and parses argv = [program, *args] into it.

  Returns (holder, rest): rest is [program, *positional arguments] (plus, with known_only, the
  flags this tool does not define, in order, for a library that takes its own, e.g. Beam).
  Without positional (or known_only), a positional argument is an error. Flags and positional
  arguments may be interleaved, and everything after `--` is positional; with stop_at_positional
  the first positional argument ends the flags (a command to run).
  """
  fv = flags.FlagValues()
  define(fv)
  fv.set_gnu_getopt(not stop_at_positional)
  argv = list(argv)
  if any(a in HELP_ARGS for a in _flag_args(argv[1:], stop_at_positional)):
    print(help_text(fv, doc))
    sys.exit(0)
  try:
    rest = fv(argv, known_only=known_only)
  except flags.Error as e:
    usage_error(_one_line(str(e)))
  if rest[1:] and not (positional or known_only or stop_at_positional):
    usage_error(f"unexpected arguments: {' '.join(rest[1:])}")
  return fv, rest


def _one_line(message: str) -> str:
  """absl's error, on one line; a missing required flag as `--NAME is required`."""
  message = re.sub(r"flag --(\w+)=None: Flag --\1 must have a value other than None\.",
                   r"--\1 is required", message)
  return "; ".join(line for line in message.splitlines() if line.strip())


def _flag_args(args: list[str], stop_at_positional: bool) -> list[str]:
  """The arguments that may be flags: those before `--` (before the first positional one when
  positional arguments end the flags)."""
  out = []
  for a in args:
    if a == "--" or (stop_at_positional and not a.startswith("-")):
      break
    out.append(a)
  return out


def help_text(fv: flags.FlagValues, doc: str) -> str:
  """The tool's docstring, then every flag with its help and default (absl's rendering, less its
  per-module headings: a tool has one module)."""
  lines = fv.get_help(include_special_flags=False).splitlines()
  return "\n".join([doc.strip(), "", "flags:"] + [l for l in lines if l.startswith(" ")])


def run(main: Callable[[list[str]], int | None]) -> None:
  """app.run(main) for a tool whose main parses its own flags: absl's logging and process set-up,
  then sys.exit(main(sys.argv)). absl's own flags (--verbosity, ...) keep their defaults."""
  app.run(main, flags_parser=_no_global_flags)


def _no_global_flags(argv: list[str]) -> list[str]:
  flags.FLAGS.mark_as_parsed()
  return argv
