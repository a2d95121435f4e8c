"""Decoding for the probe: greedy decoding with centroid erasure, and TCCD for the alpha sweep.

Both are `mmscale.eval.generate` with passes from mmscale/eval (`erasure.ErasedPass`,
`contrastive.tccd_decoding`), so the probe and the evaluators share one decoder. Erase layers =
{"centroids": float[depth, k, D], "active": bool[depth]} (`centroids.erase_layers`); the
per-call position mask is the batch's modality mask: the prompt's at prefill, and generated
tokens count as text (a text-erased pass erases them, an image-erased pass never does).
"""

from __future__ import annotations

from mmscale.eval import contrastive as eval_contrastive
from mmscale.eval import generate
from mmscale.eval.contrastive import tccd_logits
from mmscale.eval.erasure import ErasedPass, erased_params

__all__ = ["erased_generate", "tccd_generate", "tccd_logits"]


def erased_generate(model, params, prompt: dict, layers: dict | None = None, *,
                    modality: str = "text", max_new_tokens: int, valid_vocab: int = 0):
  """Greedy decoding of a left-padded `prompt` with `modality` hidden states replaced by
  centroids at the active layers of `layers` (None: plain greedy decoding); `valid_vocab` > 0
  never picks ids >= it (the tokenizer's size, when the model's vocabulary is padded past it).
  Returns int32[B, max_new_tokens] (no stop tokens)."""
  if layers is None:
    return generate.generate(model, params, prompt, max_new_tokens=max_new_tokens,
                             valid_vocab=valid_vocab)
  return generate.generate((ErasedPass(model, modality=modality),),
                           (erased_params(params, layers),), prompt,
                           max_new_tokens=max_new_tokens, valid_vocab=valid_vocab)


def tccd_generate(model, params, prompt: dict, text_layers: dict, alpha, beta, *,
                  max_new_tokens: int, valid_vocab: int = 0):
  """Greedy TCCD decoding with two KV-cached passes (full, text-centroid-erased) per step.

  Args:
    prompt: left-padded prompt batch (`mmscale.data.batch.one_per_row(..., pad="left")`).
    text_layers: {"centroids": float[depth, k, D], "active": bool[depth]} of the text
      centroids (`centroids.erase_layers(cset, "text", depth)`).
    alpha, beta: float scalars (traced: a sweep reuses one compilation).
    valid_vocab: > 0 never picks ids >= it (as `erased_generate`).
  Returns: int32[B, max_new_tokens] (no stop tokens: every row decodes max_new_tokens).
  """
  return generate.generate(
      prompt=prompt, max_new_tokens=max_new_tokens, valid_vocab=valid_vocab,
      **eval_contrastive.tccd_decoding(model, params, text_layers, alpha, beta))
