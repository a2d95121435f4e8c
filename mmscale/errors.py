"""Errors that mmscale raises for bad input: each names the field or file and what was expected."""


class MmscaleError(Exception):
  """Base class of every error mmscale raises on purpose."""


class ConfigError(MmscaleError, ValueError):
  """A config field is missing, unknown or inconsistent; raised before anything compiles."""

  def __init__(self, field: str, message: str):
    self.field = field
    super().__init__(f"config field '{field}': {message}")


class RecordFormatError(MmscaleError):
  """A record directory, manifest or record does not follow docs/data_format.md."""


class DataError(MmscaleError):
  """The data cannot feed the run (e.g. too many corrupt records were skipped)."""


class TrainingDivergedError(MmscaleError):
  """The loss became NaN or Inf; the last good checkpoint is kept."""


class CheckpointError(MmscaleError):
  """A checkpoint is missing or unreadable."""


class UnknownNameError(MmscaleError, KeyError, ValueError):
  """A name that no registry entry has; the message names the kind and lists the known names."""

  def __str__(self) -> str:
    return str(self.args[0])
