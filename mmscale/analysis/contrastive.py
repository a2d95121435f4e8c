"""Text-centroid contrastive decoding (TCCD) for the probe's alpha sweep.

The combination (`tccd_logits`, sign convention and plausibility cut-off) and the two-pass
decoding live in mmscale/eval/contrastive.py, where every evaluator and `python -m
mmscale.generate` use them (`eval.tccd_alpha`); this module is the analysis-side entry point.
"""

from __future__ import annotations

from mmscale.eval import contrastive as eval_contrastive
from mmscale.eval import generate
from mmscale.eval.contrastive import tccd_logits

__all__ = ["tccd_generate", "tccd_logits"]


def tccd_generate(model, params, prompt: dict, text_layers: dict, alpha, beta, *,
                  max_new_tokens: int):
  """Greedy TCCD decoding with two KV-cached passes (full, text-centroid-erased) per step.

  Args:
    prompt: left-padded prompt batch (`mmscale.data.batch.one_per_row(..., pad="left")`).
    text_layers: {"centroids": float[depth, k, D], "active": bool[depth]} of the text
      centroids (`centroids.erase_layers(cset, "text", depth)`).
    alpha, beta: float scalars (traced: a sweep reuses one compilation).
  Returns: int32[B, max_new_tokens] (no stop tokens: every row decodes max_new_tokens).
  """
  return generate.generate(
      prompt=prompt, max_new_tokens=max_new_tokens,
      **eval_contrastive.tccd_decoding(model, params, text_layers, alpha, beta))
