"""Evaluator names from the config: flag spellings are split, unknown names fail at start-up."""

import pytest

from mmscale.config import base_config
from mmscale.errors import ConfigError
from mmscale.eval.runner import DEFAULT_EVALS, configured_evals, validate_evals


def _config(evals=(), every=None):
  c = base_config()
  c.eval.evals = evals
  if every is not None:
    c.eval.every = every
  return c


@pytest.mark.parametrize("given, expected", [
    ((), DEFAULT_EVALS),
    (("vqa,",), ("vqa",)),                      # what --config.eval.evals=vqa, gives
    (("vqa,pairs",), ("vqa", "pairs")),
    (("vqa", "pairs"), ("vqa", "pairs")),
])
def test_configured_evals_splits_flag_spellings(given, expected):
  assert configured_evals(_config(given)) == expected


def test_unknown_evaluator_names_the_field():
  with pytest.raises(ConfigError, match=r"eval\.evals.*'vqaa'"):
    validate_evals(_config(("vqaa",)))
  with pytest.raises(ConfigError, match=r"eval\.evals.*'nope'"):
    validate_evals(_config(("vqa",)), names=["nope"])


def test_unknown_scheduled_evaluator_names_the_field():
  with pytest.raises(ConfigError, match=r"eval\.every.*'capton'"):
    validate_evals(_config(("vqa",), every={"capton": 100}))
  assert validate_evals(_config(("vqa",), every={"vqa": 100})) == ("vqa",)
