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

Every tool ends a mistake the same way (`run`): an `MmscaleError` or a missing/unreadable file is
one `error: ...` line on stderr, exit status 2 for a usage mistake (`UsageError`: a config field,
an unknown name, a flag) and 1 for a run that failed. The commands built on ml_collections'
`--config=path.py[:arg] --config.a.b=v` flags (train, eval) parse them with
`parse_config_flags`, which turns every config-file and override mistake into such a line.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags

from mmscale import host_memory
from mmscale.errors import MmscaleError, UsageError

HELP_ARGS = ("-h", "-help", "--help", "--helpshort", "--helpfull")
USAGE_ERROR = 2  # the exit status of a command-line mistake, as argparse and getopt tools use


def usage_error(message: str) -> NoReturn:
  """One `error: MESSAGE` line on stderr, then exit status 2."""
  print(f"error: {_one_line(message)}", file=sys.stderr)
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


def fail(error: BaseException) -> NoReturn:
  """Ends the process on `error` with one `error: ...` line: status 2 for a usage mistake, else 1."""
  if isinstance(error, OSError) and error.filename:  # "PATH: No such file or directory"
    message = f"{error.filename}: {error.strerror or error}"
  else:
    message = str(error)
  print(f"error: {_one_line(message)}", file=sys.stderr)
  sys.exit(USAGE_ERROR if isinstance(error, UsageError) else 1)


def failing(main: Callable[[list[str]], int | None]) -> Callable[[list[str]], int | None]:
  """`main` with user mistakes as one line: an `MmscaleError` anywhere in the exception chain
  (libraries re-raise ours as theirs), or a missing, unreadable or misplaced file. Before main,
  the host memory settings of every entry point (mmscale/host_memory.py; a bad
  MMSCALE_HOST_MALLOC is such a mistake)."""
  def wrapped(argv):
    try:
      host_memory.keep_freed_memory()  # before JAX starts its threads
      return main(argv)
    except (MmscaleError, OSError) as e:
      ours = find_error(e)
      if ours is None and not isinstance(e, (FileNotFoundError, IsADirectoryError,
                                             NotADirectoryError, PermissionError)):
        raise
      fail(ours or e)
  return wrapped


def find_error(error: BaseException | None) -> MmscaleError | None:
  """The innermost `MmscaleError` in `error`'s chain (`__cause__`, else `__context__` unless
  suppressed), else None: the one raised first, before a library re-raised it around a
  traceback."""
  seen, found = set(), None
  while error is not None and id(error) not in seen:
    if isinstance(error, MmscaleError):
      found = error
    seen.add(id(error))
    error = error.__cause__ if error.__cause__ is not None else (
        None if error.__suppress_context__ else error.__context__)  # `raise ... from None`
  return found


def run(main: Callable[[list[str]], int | None]) -> None:
  """app.run(main) for a tool whose main parses its own flags: absl's logging and process set-up,
  then sys.exit(main(sys.argv)), user mistakes as one line (`failing`). absl's own flags
  (--verbosity, ...) keep their defaults."""
  app.run(failing(main), flags_parser=_no_global_flags)


def run_with_config_flags(main: Callable[[list[str]], int | None]) -> None:
  """app.run(main) for a command on absl's global flags with an ml_collections config flag
  named `config` (train, eval): `parse_config_flags`, then main with mistakes as one line."""
  app.run(failing(main), flags_parser=parse_config_flags)


def parse_config_flags(argv: list[str]) -> list[str]:
  """absl's global parse of argv, each mistake one `error:` line with exit status 2."""
  try:
    return parse_with_config_flag(flags.FLAGS, argv)
  except UsageError as e:
    usage_error(str(e))


def parse_with_config_flag(fv: flags.FlagValues, argv: list[str]) -> list[str]:
  """Parses argv into `fv`, which defines an ml_collections config flag named `config`;
  every mistake becomes a `UsageError` naming the flag, field or file.

  ml_collections reports a config-file mistake as a `ValueError` around the traceback (ours is
  found in its chain), an unknown `--config.a.b` override as an AttributeError and a missing
  config file only when the config is first read.
  """
  try:
    rest = fv(argv)
    if "config" in fv and fv["config"].present:
      fv["config"].value.keys()  # a config file that failed to load raises here
    return rest
  except flags.Error as e:
    ours = find_error(e)
    raise UsageError(str(ours) if ours else _last_line(str(e))) from None
  except (AttributeError, KeyError) as e:
    raise UsageError(_unknown_override(argv, e)) from None
  except OSError as e:
    raise UsageError(_config_file_error(argv, e)) from None


def _last_line(message: str) -> str:
  """absl's `flag --x=v: <text>` with only the last line of a multi-line text (a traceback)."""
  lines = [l for l in message.splitlines() if l.strip()]
  if len(lines) <= 1:
    return message
  return f"{lines[0].rstrip(':')} {lines[-1].strip()}"


def _config_file_error(argv: list[str], error: OSError) -> str:
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
  path = spec.partition(":")[0]
  return (f"--config={spec}: config file '{path}' does not exist" if path
          and not os.path.isfile(path) else f"--config={spec}: {_last_line(str(error))}")


def _unknown_override(argv: list[str], error: BaseException) -> str:
  """`--config.train.stepz=5` -> which field is unknown, with ml_collections' suggestion."""
  text = str(error.args[0]) if error.args else str(error)
  key = re.search(r'instead of "(\w+)"', text) or re.search(r"(\w+)\\?'", text)
  hint = re.search(r'Did you mean "(\w+)"', text)
  flag = next((a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")
               and key and re.search(rf"\.{re.escape(key.group(1))}(\.|=|$)", a)), "--config.*")
  field = flag[len("--config."):] if flag.startswith("--config.") else "?"
  suggestion = f" (did you mean '{hint.group(1)}'?)" if hint else ""
  return f"{flag}: config field '{field}' is not in the schema (mmscale/config.py){suggestion}"


def _no_global_flags(argv: list[str]) -> list[str]:
  flags.FLAGS.mark_as_parsed()
  return argv
