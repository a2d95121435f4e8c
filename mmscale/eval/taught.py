"""Which evaluators a run's training mixture teaches, read from its components' record kinds.

An evaluator measures a skill only if the mixture contains data of the kind that teaches it: a
model trained on captions and VQA has never seen free text or interleaved few-shot prompts, so its
text perplexity or 8-shot accuracy says nothing about the mixture's quality. The results table
(`runner.format_table`) prints the taught evaluators first and the others under a heading that
says so. Kinds come from each component's manifest (`counts`: records per kind,
docs/data_format.md); tfds components are captions.
"""

from __future__ import annotations

import os

from mmscale.data import mixture, records

# record kind -> the evaluators it teaches
TAUGHT_BY_KIND = {
    "vqa": ("vqa", "heldout_loss"),
    "caption": ("caption",),
    "pair": ("pairs",),
    "interleaved": ("fewshot",),
    "text": ("text",),
}


def _component_kinds(data_config, name: str) -> set[str] | None:
  sources = dict(data_config.sources or {})
  spec = sources.get(name)
  if spec is None:
    path = mixture.arm_dir(data_config.world_dir, name)
  elif spec.get("type") == "tfds":
    return {"caption"}
  else:
    path = os.path.expanduser(str(spec.get("dir") or ""))
  try:
    counts = records.read_manifest(path).get("counts") or {}
  except Exception:  # pylint: disable=broad-except  (no manifest: the kinds are unknown)
    return None
  return {kind for kind, n in counts.items() if n}


def mixture_kinds(data_config) -> set[str] | None:
  """Record kinds of the mixture's components of weight > 0; None if any is unknown."""
  kinds: set[str] = set()
  for name in mixture.normalised_weights(data_config.mixture):
    found = _component_kinds(data_config, name)
    if found is None:
      return None
    kinds |= found
  return kinds


def taught_evaluators(data_config) -> set[str] | None:
  """Evaluators the mixture teaches; None when the mixture's kinds cannot be read (then the
  table makes no split)."""
  kinds = mixture_kinds(data_config)
  if kinds is None:
    return None
  return {e for kind in kinds for e in TAUGHT_BY_KIND.get(kind, ())}
