"""Evaluator names from the config: flag spellings are split, unknown names fail at start-up."""

import pytest

from mmscale.config import base_config
from mmscale.errors import ConfigError
from mmscale.eval.registry import DEFAULT_EVALS, configured_evals, validate_evals


def _config(evals=(), every=None):
  c = base_config()
  c.eval.evals = evals
  if every is not None:
    c.eval.every = every
  return c.eval


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


def test_results_table_shows_both_baselines_and_long_group_names():
  from mmscale.eval.runner import format_table
  group = "knowledge_ungrounded"
  results = {f"vqa/accuracy/{group}": 0.6, f"vqa/soft_accuracy/{group}": 0.6,
             f"vqa/majority/{group}": 0.18, f"vqa/form_majority/{group}": 0.41,
             f"vqa/count/{group}": 826, "vqa/accuracy/all": 0.5, "vqa/count/all": 900,
             "vqa/form_majority/all": 0.42}
  header, row, total = format_table(results).splitlines()
  assert header.split()[-3:] == ["majority", "form", "maj."]
  assert row.split() == [group, "826", "0.600", "0.600", "0.180", "0.410"]
  assert total.split() == ["all", "900", "0.500", "nan", "-", "0.420"]
  assert len(header) == len(row) == len(total)  # aligned under a long group name
