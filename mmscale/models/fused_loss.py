"""The training loss without full logits: output projection + cross-entropy on loss positions only.

`loss.loss_sums` needs logits float32[B, T, V] at every position. In a multimodal batch a large
share of the positions carries no loss (image tokens, prompts, padding), and the logits are the
largest activation of the step: V = 8192 against a width of a few hundred. This computes the
same sums from the final hidden states and the output matrix:

- each row's loss positions are moved to its front (a stable sort, so order is kept) and only
  the first C of every row are projected, where C is the smallest capacity that holds the
  fullest row; capacities are the multiples of a step of 8 positions or more, at most
  `MAX_CAPACITIES` of them up to T (a `lax.switch`, so shapes stay static and one compiled step
  serves every batch; the unused branches cost nothing at run time). A step of T / 16 keeps
  the padding small: 127 loss positions of T = 192 project 128 rows, not the 144 of T / 8 steps;
- the gradient is computed in the forward pass (a custom VJP, as in fused linear cross-entropy
  kernels): the backward pass keeps only d hidden float[B, T, D] and d matrix float[V, D], never
  the float32[B, C, V] probabilities, and needs no transposed copy of them;
- optionally the positions are taken in blocks (`block_rows`, a `lax.scan` over slices of every
  row's positions, `train.loss_block_mib` in the train step): only one block's logits exist at a
  time, which bounds the memory a large vocabulary takes.

Values equal `loss.loss_sums` within float32 rounding; the gradient is the gradient of
`nll + z` (the training objective). The returned sums other than the objective carry no gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mmscale.models.loss import target_weights
from mmscale.models.mixed_dot import einsum_accumulated, einsum_float32

CAPACITY_QUANTUM = 8  # capacities are multiples of a step that is a multiple of this
MAX_CAPACITIES = 16  # branches of the switch (compile time grows with them)


def _capacities(length: int) -> tuple[int, ...]:
  """Row capacities for T = `length`: multiples of step = 8 * ceil(T / (8 * 16)), up to T."""
  step = CAPACITY_QUANTUM * -(-length // (CAPACITY_QUANTUM * MAX_CAPACITIES))
  return tuple(sorted({min(length, step * k) for k in range(1, -(-length // step) + 1)}))


def loss_block_rows(block_mib: float, vocab: int, batch_shards: int) -> int:
  """Rows (positions summed over the global batch) of one block of the loss, 0 = one block.

  `block_mib` MiB of float32 logits per device per block (0 = one block): a bound on the memory
  the logits take with a large vocabulary (a 256k one takes 1 MiB per position).
  `batch_shards`: the devices the batch is split over, so the budget is per device.
  """
  if block_mib < 0:
    raise ValueError(f"loss block MiB: expected >= 0 (0 = one block), got {block_mib}")
  if not block_mib:
    return 0
  return max(1, int(block_mib * 2 ** 20) // (4 * vocab)) * batch_shards


def _block_sums_and_grads(h, matrix, t, w, z_loss, logit_softcap):
  """One block of positions: h float[B, P, D], t int[B, P], w float32[B, P] ->
  (float32[4] sums (nll, z, weight, correct), d h float[B, P, D], d matrix float32[V, D])."""
  logits = einsum_float32("bcd,vd->bcv", h, matrix.astype(h.dtype))  # float32[B, P, V]
  if logit_softcap:
    logits = logit_softcap * jnp.tanh(logits / logit_softcap)
  max_logit = jnp.max(logits, axis=-1)
  exp = jnp.exp(logits - max_logit[..., None])
  sum_exp = jnp.sum(exp, axis=-1)
  log_z = max_logit + jnp.log(sum_exp)
  target_logit = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
  nll = ((log_z - target_logit) * w).sum()
  z = z_loss * (jnp.square(log_z) * w).sum()
  correct = ((target_logit >= max_logit) * w).sum()
  # d(nll + z)/d logits = w * (p * (1 + 2 z_loss log Z) - onehot(target))
  scale = w * (1.0 + 2.0 * z_loss * log_z) / sum_exp
  grad = exp * scale[..., None]
  grad = grad - jax.nn.one_hot(t, logits.shape[-1], dtype=grad.dtype) * w[..., None]
  if logit_softcap:  # d(c tanh(l / c)) / dl = 1 - tanh^2 = 1 - (capped / c)^2
    grad = grad * (1.0 - jnp.square(logits / logit_softcap))
  grad = grad.astype(h.dtype)
  d_h = einsum_accumulated("bcv,vd->bcd", grad, matrix.astype(h.dtype))
  # grad^T h over the flattened rows, float[V, D] directly: as einsum('bcd,bcv->dv').T XLA folds
  # the transpose into the dot and gives it a transposed copy of h, the one operand layout its
  # CPU GEMM runs about 30% slower (docs/performance.md)
  rows_total = grad.shape[0] * grad.shape[1]
  d_matrix = einsum_float32("tv,td->vd", grad.reshape(rows_total, -1),
                            h.reshape(rows_total, -1))
  return jnp.stack([nll, z, w.sum(), correct]), d_h, d_matrix


def _blocks(batch: int, capacity: int, rows: int) -> tuple[int, int]:
  """(blocks, positions per block) covering `capacity` positions of `batch` rows with at most
  `rows` rows per block (0 = one block); the last block is padded with weight-0 positions."""
  if not rows or batch * capacity <= rows:
    return 1, capacity
  per_block = max(1, rows // batch)
  blocks = -(-capacity // per_block)
  return blocks, -(-capacity // blocks)


def _sums_and_grads(capacity, hidden, matrix, targets, weights, z_loss, logit_softcap, rows):
  """One capacity. hidden float[B, T, D], matrix float[V, D], targets int[B, T], weights
  float32[B, T] -> (objective, (nll, z, weight, correct), d hidden float[B, T, D], d matrix).
  logit_softcap > 0: the loss is taken on c * tanh(logits / c) (Gemma 2's final soft-capping).
  rows > 0: the positions are taken in blocks of at most `rows` rows (a `lax.scan`, d matrix
  accumulated in float32), so no more than one block's logits exist at a time."""
  # Loss positions first, in order (argsort is stable); the rest fill the tail of the capacity
  # with weight 0.
  order = jnp.argsort(weights <= 0, axis=-1, stable=True)[:, :capacity]  # int[B, C]
  h = jnp.take_along_axis(hidden, order[..., None], axis=1)  # [B, C, D]
  t = jnp.take_along_axis(targets, order, axis=1)
  w = jnp.take_along_axis(weights, order, axis=1)
  blocks, per_block = _blocks(hidden.shape[0], capacity, rows)
  if blocks == 1:
    sums, d_h, d_matrix = _block_sums_and_grads(h, matrix, t, w, z_loss, logit_softcap)
  else:
    pad = blocks * per_block - capacity
    h, t, w = (jnp.pad(x, ((0, 0), (0, pad)) + ((0, 0),) * (x.ndim - 2)) for x in (h, t, w))

    def block(carry, index):
      sums, d_h, d_matrix = carry
      take = lambda x: jax.lax.dynamic_slice_in_dim(x, index * per_block, per_block, axis=1)  # noqa: E731
      block_sums, block_d_h, block_d_matrix = _block_sums_and_grads(
          take(h), matrix, take(t), take(w), z_loss, logit_softcap)
      d_h = jax.lax.dynamic_update_slice_in_dim(d_h, block_d_h, index * per_block, axis=1)
      return (sums + block_sums, d_h, d_matrix + block_d_matrix), None

    init = (jnp.zeros((4,), jnp.float32), jnp.zeros(h.shape, h.dtype),
            jnp.zeros(matrix.shape, jnp.float32))
    (sums, d_h, d_matrix), _ = jax.lax.scan(block, init, jnp.arange(blocks))
    d_h = d_h[:, :capacity]
  nll, z, weight, correct = sums
  rows_index = jnp.arange(hidden.shape[0])[:, None]
  d_hidden = jnp.zeros(hidden.shape, d_h.dtype).at[rows_index, order].add(d_h)
  return (nll + z, (nll, z, weight, correct), d_hidden.astype(hidden.dtype),
          d_matrix.astype(matrix.dtype))


def _forward(hidden, matrix, targets, weights, z_loss, logit_softcap, rows):
  caps = _capacities(hidden.shape[1])
  fullest = jnp.max(jnp.sum(weights > 0, axis=-1))
  branch = jnp.searchsorted(jnp.asarray(caps), fullest)  # smallest capacity >= fullest row
  branches = [functools.partial(_sums_and_grads, c, z_loss=z_loss, logit_softcap=logit_softcap,
                                rows=rows)
              for c in caps]
  return jax.lax.switch(jnp.minimum(branch, len(caps) - 1), branches, hidden, matrix, targets,
                        weights)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _objective(hidden, matrix, targets, weights, z_loss, logit_softcap, rows):
  objective, sums, _, _ = _forward(hidden, matrix, targets, weights, z_loss, logit_softcap, rows)
  return objective, sums


def _objective_fwd(hidden, matrix, targets, weights, z_loss, logit_softcap, rows):
  objective, sums, d_hidden, d_matrix = _forward(hidden, matrix, targets, weights, z_loss,
                                                 logit_softcap, rows)
  return (objective, sums), (d_hidden, d_matrix)


def _objective_bwd(z_loss, logit_softcap, rows, residuals, cotangents):
  del z_loss, logit_softcap, rows
  d_hidden, d_matrix = residuals
  ct = cotangents[0]  # the sums carry no gradient
  return (d_hidden * ct.astype(d_hidden.dtype), d_matrix * ct.astype(d_matrix.dtype), None, None)


_objective.defvjp(_objective_fwd, _objective_bwd)


def fused_loss_sums(hidden: jax.Array, matrix: jax.Array, batch: dict,
                    z_loss: float = 0.0, logit_softcap: float = 0.0,
                    block_rows: int = 0) -> dict[str, jax.Array]:
  """`loss.loss_sums` from hidden states instead of logits.

  Args:
    hidden: float[B, T, D], the decoder's final-normed hidden states (logits = hidden @ matrix^T).
    matrix: float[V, D], the output projection (the tied embedding table, or the untied kernel
      transposed).
    batch: the batch of docs/contracts.md §4.
    z_loss: weight of log(Z)^2.
    logit_softcap: > 0: the logits are soft-capped first, c * tanh(logits / c), as the
      decoder's `final_logit_softcap` does to its full logits.
    block_rows: > 0: at most this many positions (summed over the batch) are projected at a
      time, in blocks over the positions of every row (`loss_block_rows` gives the train step's
      choice); 0: all in one block. The sums are the same either way, up to float32 rounding.
  Returns:
    {'objective': nll + z (differentiable), 'nll', 'z', 'weight', 'correct'} as sums.
  """
  targets = jnp.pad(batch["tokens"][:, 1:], ((0, 0), (0, 1)))
  weights = jnp.pad(target_weights(batch), ((0, 0), (0, 1)))
  objective, (nll, z, weight, correct) = _objective(hidden, matrix, targets, weights,
                                                    float(z_loss), float(logit_softcap),
                                                    int(block_rows))
  return {"objective": objective, "nll": nll, "z": z, "weight": weight, "correct": correct}
