"""Errors that mmscale raises for bad input: each names the field or file and what was expected.

One hierarchy under `MmscaleError`; every error pickles (multi-process data workers send them
back) and survives the libraries that re-raise `type(e)(message)` with one argument (absl and
ml_collections do, for errors in a config file). Command-line tools print `error: <message>`
and exit 2 for a usage mistake (`UsageError`s: a config field, an unknown name) or 1 for a run
that failed (docs/failures.md).
"""

import re


class MmscaleError(Exception):
  """Base class of every error mmscale raises on purpose."""


class UsageError(MmscaleError):
  """The user asked for something that cannot be: a command-line tool exits with status 2."""


class ConfigError(UsageError, ValueError):
  """A config field is missing, unknown or inconsistent; raised before anything compiles.

  `field` is a dotted config name (`train.steps`, shown as "config field 'train.steps'") or a
  description (`configs/world/tiny.py argument 'size'`, shown as is). With one argument (a
  library re-raising `type(e)(text)`), the argument is the whole message.
  """

  def __init__(self, field: str, message: str | None = None):
    if message is None:
      field, message = "", field
    self.field, self.message = field, message
    super().__init__(field, message)

  def __str__(self) -> str:
    if not self.field:
      return self.message
    name = f"config field '{self.field}'" if re.fullmatch(r"[\w.]+", self.field) else self.field
    return f"{name}: {self.message}"


class RecordFormatError(MmscaleError):
  """A record directory, manifest or record does not follow docs/data_format.md."""


class DataError(MmscaleError):
  """The data cannot feed the run (e.g. too many corrupt records were skipped)."""


class TrainingDivergedError(MmscaleError):
  """The divergence guard stopped the run (mmscale/train/guard.py); the message names the
  checkpoint kept (one that passed the guard) or says that none is."""


class CheckpointError(MmscaleError):
  """A checkpoint is missing or unreadable."""


class UnknownNameError(UsageError, KeyError, ValueError):
  """A name that no registry entry has; the message names the kind and lists the known names."""

  def __str__(self) -> str:
    return str(self.args[0])
