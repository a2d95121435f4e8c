"""Greedy decoding with centroid erasure, for the probe: `mmscale.eval.generate` with one
`ErasedPass` (mmscale/eval/erasure.py), so the probe and the evaluators share one decoder.

Erase layers = {"centroids": float[depth, k, D], "active": bool[depth]}
(`centroids.erase_layers`) and modality "text" | "image"; the per-call position mask is the
batch's modality mask: the prompt's at prefill, and generated tokens count as text (a
text-erased pass erases them, an image-erased pass never does).
"""

from __future__ import annotations

from mmscale.eval import generate
from mmscale.eval.erasure import ErasedPass, erased_params


def erased_generate(model, params, prompt: dict, layers: dict | None = None, *,
                    modality: str = "text", max_new_tokens: int):
  """Greedy decoding of a left-padded `prompt` with `modality` hidden states replaced by
  centroids at the active layers of `layers` (None: plain greedy decoding).
  Returns int32[B, max_new_tokens] (no stop tokens)."""
  if layers is None:
    return generate.generate(model, params, prompt, max_new_tokens=max_new_tokens)
  return generate.generate((ErasedPass(model, modality=modality),),
                           (erased_params(params, layers),), prompt,
                           max_new_tokens=max_new_tokens)
