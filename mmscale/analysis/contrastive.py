"""Text-centroid contrastive decoding (TCCD; DESIGN §1, PAPERS.md "centroid erasure").

Sign convention: with `full` the logits of the unmodified model and `ref` those of the reference
in which text hidden states are replaced by their nearest text centroids (text structure erased),

    tccd = (1 + alpha) * full - alpha * ref        on tokens with p_full >= beta * max p_full
    tccd = -inf                                    on the others (adaptive plausibility cut-off)

alpha > 0 amplifies what the full model predicts beyond the text-centroid reference (i.e. what
depends on fine-grained text/visual structure rather than coarse language priors); alpha = 0 is
the full model (its argmax is always kept by the cut-off, so greedy decoding is unchanged);
alpha < 0 would move towards the reference. beta in [0, 1]: 0 keeps every token, 1 only the
full model's argmax (making alpha irrelevant). The cut-off is the visual-contrastive-decoding
rule: it stops the contrast from promoting tokens the full model finds implausible.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mmscale.analysis.decode import cached_decode


def tccd_logits(full: jax.Array, ref: jax.Array, alpha, beta) -> jax.Array:
  """float32[..., V] full and reference logits -> float32[..., V] contrasted logits (module doc).

  The cut-off compares probabilities in log space: log p >= log beta + max log p.
  """
  full, ref = full.astype(jnp.float32), ref.astype(jnp.float32)
  logp = jax.nn.log_softmax(full, axis=-1)
  keep = logp >= jnp.log(beta) + jnp.max(logp, axis=-1, keepdims=True)
  return jnp.where(keep, (1.0 + alpha) * full - alpha * ref, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens"))
def tccd_generate(model, params, prompt: dict, text_layers: dict, alpha, beta, *,
                  max_new_tokens: int) -> jax.Array:
  """Greedy TCCD decoding with two KV-cached passes (full, text-centroid-erased) per step.

  Args:
    prompt: left-padded prompt batch (docs/contracts.md §4; mmscale.eval.generate.left_pad).
    text_layers: {"centroids": float[depth, k, D], "active": bool[depth]} of the text centroids
      (`centroids.erase_layers(cset, "text", depth)`).
    alpha, beta: float scalars (traced: a sweep reuses one compilation).
  Returns: int32[B, max_new_tokens].
  """
  combine = lambda ls: tccd_logits(ls[0], ls[1], alpha, beta)
  return cached_decode(model, params, prompt, [None, (text_layers, "text")], combine,
                       max_new_tokens=max_new_tokens)
