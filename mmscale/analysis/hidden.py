"""Decoder hidden states at chosen layers, split by modality (image vs text positions).

The decoder sows every block's output into the 'intermediates' collection (models/decoder.py);
`hidden_states` makes it mutable and stacks what it finds to float[L, B, T, D]. Layer l is the
residual stream after decoder block l (0-based), the same point the erasure hook replaces.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mmscale.eval.erasure import MODALITIES, modality_masks

__all__ = ["MODALITIES", "collect", "hidden_states", "modality_masks", "stack_sown"]


def stack_sown(intermediates) -> jax.Array:
  """The sown 'hidden' values -> float[depth, B, T, D], scanned or unscanned decoder."""
  dec = intermediates["decoder"]
  if "layers" in dec:  # scanned: float[depth, B, T, D] (MoE groups: float[G, every, B, T, D])
    hidden = dec["layers"]["hidden"][0]
    return hidden.reshape((-1,) + hidden.shape[-3:])
  names = sorted((k for k in dec if k.startswith("layers_")), key=lambda k: int(k.split("_")[1]))
  return jnp.stack([dec[k]["hidden"][0] for k in names])


@functools.partial(jax.jit, static_argnames=("model", "layers"))
def hidden_states(model, params, batch: dict, layers: tuple[int, ...]):
  """(float[len(layers), B, T, D] hidden states, {modality: bool[B, T]} masks) of one batch."""
  _, state = model.apply({"params": params}, batch, mutable=["intermediates"])
  hidden = stack_sown(state["intermediates"])
  return hidden[jnp.asarray(layers)], modality_masks(batch)


def collect(model, params, batches, layers: tuple[int, ...], to_host) -> dict[str, np.ndarray]:
  """Hidden states of every batch, compacted on the host per modality.

  Args:
    batches: iterable of (global batch, n_real) - rows past n_real are filler and dropped.
    to_host: global array -> full numpy array on every process (gathers across devices and
      processes, e.g. `Run.to_host`).
  Returns: {modality: float32[len(layers), N_modality, D]} (padding excluded).
  """
  out = {m: [] for m in MODALITIES}
  for batch, n_real in batches:
    hidden, masks = hidden_states(model, params, batch, tuple(layers))
    hidden = to_host(hidden)[:, :n_real]
    for m in MODALITIES:
      mask = to_host(masks[m])[:n_real]
      out[m].append(hidden[:, mask].astype(np.float32))
  return {m: np.concatenate(v, axis=1) for m, v in out.items()}
