"""Every name a user picks in a config or flag is looked up in a `Registry`: an unknown name raises
`UnknownNameError` (or a ConfigError / ClaimError naming the field it was written in) that lists
the known names."""
import pytest

from mmscale.data import mixture
from mmscale.data.ingest import make_source
from mmscale.errors import ConfigError, UnknownNameError
from mmscale.knowledge import jobs, stages
from mmscale.knowledge.llm import make_backend
from mmscale.scaling import claims
from mmscale.scaling.launchers import LAUNCHERS, get_launcher


@pytest.mark.parametrize("lookup, match", [
    (lambda: make_source("tar", "x", None),
     r"--source='tar' is not one of \['interleaved', 'jsonl', 'llava', 'tfds', 'webdataset'\]"),
    (lambda: make_backend("gpt"), r"unknown LLM backend 'gpt'; known: \['offline', 'openai'\]"),
    (lambda: get_launcher("k8s", None),
     r"unknown launcher 'k8s'; known: \['local', 'slurm', 'tpu'\]"),
    (lambda: jobs.check_stage("summarise"),
     r"unknown stage 'summarise'; known: \['caption2vqa', 'compare', 'describe', 'enrich', "
     r"'filter', 'pair', 'vqa2caption'\]"),
    (lambda: stages.MAP_STAGES.get("pair"), r"unknown map stage 'pair'; known: \["),
])
def test_unknown_name_is_one_error_listing_the_known_names(lookup, match):
  with pytest.raises(UnknownNameError, match=match):
    lookup()


def test_unknown_field_values_name_the_field():
  with pytest.raises(ConfigError,
                     match=r"config field 'data.sources.a.type': 'zarr' is not one of "
                           r"\['records', 'tfds'\]"):
    mixture.component_source("/nonexistent", "a", {"a": {"type": "zarr"}})
  with pytest.raises(claims.ClaimError,
                     match=r"claim 'x': field 'kind': unknown kind 'bigger'; known: \['at_most'"):
    claims.validate({"name": "x", "kind": "bigger", "metric": "m"})


def test_group_stages_match_their_builders():
  assert sorted(stages.GROUP_STAGES) == jobs.GROUP_BUILDERS.names()
  assert not set(stages.MAP_STAGES) & set(jobs.GROUP_BUILDERS)
  assert sorted(LAUNCHERS) == ["local", "slurm", "tpu"]  # sorted() gives argparse choices
