"""Mixture-of-experts feed-forward block: a top-k router over SwiGLU experts (docs/moe.md).

`MoEBlock` replaces the decoder's dense SwiGLU in every `decoder.moe_every`-th layer. Tokens are
routed by a float32 softmax router to `experts_per_token` of `num_experts` experts; the expert
outputs are summed with the router weights (renormalised over the chosen k when `moe_norm_topk`).

Dispatch (`decoder.moe_dispatch`, registry `DISPATCHES`):
- "dropless": the token copies are sorted by expert and each expert's contiguous run goes through
  one grouped matmul (`jax.lax.ragged_dot`); no token is dropped, compute is exactly k per token.
- "capacity": GShard's one-hot dispatch/combine per batch row with at most
  C = ceil(k * T * capacity_factor / E) tokens per expert; first choices take slots before second
  choices, overflow is dropped (counted in `dropped`), the residual stream carries it on.

Expert weights are float[E, D, F] / float[E, F, D] named ("experts", "embed", "mlp"), so the
logical rules put experts on the `expert` mesh axis (and D on fsdp, F on tensor); the dispatched
tokens are pinned to ("experts", "activation_batch", ...) so XLA partitions each expert's matmul
onto the devices holding it (expert parallelism).

Router statistics are sown in the 'moe' collection ({"load_balance", "router_z", "dropped",
"load"}); the train step makes it mutable and adds the auxiliary losses (`aux_loss`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from mmscale.models.layers import BATCH_LENGTH_EMBED, Dtype, constrain, partitioned
from mmscale.registry import Registry

# Per-step metrics of an MoE model (train step keys, summed over microbatches then averaged).
MOE_METRICS = ("moe_load_balance_loss", "moe_router_z_loss", "moe_dropped_fraction",
               "moe_load_max", "moe_load_min")


@dataclasses.dataclass(frozen=True)
class MoESettings:
  """The MoE fields of `model.decoder` (hashable: a flax module field)."""
  num_experts: int
  experts_per_token: int
  mlp_dim: int
  dispatch: str = "dropless"
  capacity_factor: float = 1.25
  norm_topk: bool = True

  @classmethod
  def from_decoder_config(cls, d) -> "MoESettings | None":
    """None for a dense decoder (`moe_every` 0)."""
    if not d.moe_every:
      return None
    return cls(num_experts=d.num_experts, experts_per_token=d.experts_per_token,
               mlp_dim=d.moe_mlp_dim or d.mlp_dim, dispatch=d.moe_dispatch,
               capacity_factor=float(d.capacity_factor), norm_topk=bool(d.moe_norm_topk))


def is_moe_layer(index: int, moe_every: int) -> bool:
  """Layer `index` (0-based) is MoE when moe_every > 0 and it is the last of each group of
  moe_every layers (moe_every=2: layers 1, 3, 5, ...; MM1's 'every second layer')."""
  return moe_every > 0 and (index + 1) % moe_every == 0


def route(logits: jax.Array, k: int, norm_topk: bool):
  """Top-k routing. logits float32[N, E] -> (weights float32[N, k], experts int32[N, k],
  probs float32[N, E]). `lax.top_k` breaks ties by the lower index: routing is a pure function
  of the inputs (deterministic for a seed)."""
  probs = jax.nn.softmax(logits, axis=-1)
  weights, experts = jax.lax.top_k(probs, k)
  if norm_topk:
    weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
  return weights, experts.astype(jnp.int32), probs


def router_stats(logits: jax.Array, probs: jax.Array, experts: jax.Array) -> dict:
  """Switch load-balance loss E * sum_e f_e P_e (f_e: share of routed copies sent to e, P_e: mean
  router probability of e; 1.0 when uniform), ST-MoE router z-loss mean(logsumexp^2), and
  load float32[E] = f_e * E (1.0 = uniform)."""
  num_experts = probs.shape[-1]
  counts = jnp.sum(jax.nn.one_hot(experts, num_experts, dtype=jnp.float32), axis=(0, 1))
  share = counts / experts.size
  importance = jnp.mean(probs, axis=0)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  return {"load_balance": num_experts * jnp.sum(jax.lax.stop_gradient(share) * importance),
          "router_z": jnp.mean(jnp.square(log_z)),
          "load": jax.lax.stop_gradient(share * num_experts)}


def _swiglu_experts(x_sorted, group_sizes, w, dtype):
  """Grouped SwiGLU: rows of x float[M, D] in contiguous expert runs -> float[M, D]."""
  gate = jax.lax.ragged_dot(x_sorted, w["wi_gate"].astype(dtype), group_sizes)
  up = jax.lax.ragged_dot(x_sorted, w["wi_up"].astype(dtype), group_sizes)
  return jax.lax.ragged_dot(nn.silu(gate) * up, w["wo"].astype(dtype), group_sizes)


DISPATCHES: Registry = Registry("moe dispatch")


@DISPATCHES.register("dropless")
def dropless(x, weights, experts, w, settings: MoESettings, dtype):
  """Sort-based dropless dispatch with grouped matmuls.

  x float[B, T, D], weights float32[B, T, k], experts int32[B, T, k], w: expert kernels ->
  (float[B, T, D], dropped fraction float32[] = 0). The N*k token copies are stably sorted by
  expert, run through `ragged_dot` (group sizes = tokens per expert), unsorted, and summed with
  the router weights.
  """
  b, t, d = x.shape
  k = experts.shape[-1]
  flat = experts.reshape(-1)
  order = jnp.argsort(flat, stable=True)
  x_sorted = jnp.take(x.reshape(b * t, d), order // k, axis=0).astype(dtype)
  group_sizes = jnp.bincount(flat, length=settings.num_experts).astype(jnp.int32)
  y_sorted = _swiglu_experts(x_sorted, group_sizes, w, dtype)
  y = jnp.take(y_sorted, jnp.argsort(order), axis=0).reshape(b, t, k, d)
  y = jnp.einsum("btkd,btk->btd", y, weights.astype(dtype))
  return y, jnp.zeros((), jnp.float32)


def capacity_slots(experts: jax.Array, num_experts: int, capacity: int):
  """Slot assignment of capacity dispatch, per batch row (GShard groups).

  experts int32[G, S, k] -> (expert one-hot float32[G, S, k, E], slot one-hot float32[G, S, k, C]
  zero where dropped, kept float32[G, S, k]). Slots are filled choice-major: every token's first
  choice before any second choice, in sequence order within a choice.
  """
  g, s, k = experts.shape
  onehot = jax.nn.one_hot(experts, num_experts, dtype=jnp.float32)  # [G, S, k, E]
  by_choice = onehot.transpose(0, 2, 1, 3).reshape(g, k * s, num_experts)
  position = (jnp.cumsum(by_choice, axis=1) - 1.0) * by_choice
  position = position.reshape(g, k, s, num_experts).transpose(0, 2, 1, 3)
  slot = jnp.sum(position, axis=-1).astype(jnp.int32)  # [G, S, k]
  kept = (slot < capacity).astype(jnp.float32)
  return onehot, jax.nn.one_hot(slot, capacity, dtype=jnp.float32) * kept[..., None], kept


@DISPATCHES.register("capacity")
def capacity(x, weights, experts, w, settings: MoESettings, dtype):
  """Capacity-factor one-hot dispatch/combine (GShard / Switch). Same contract as `dropless`;
  the second output is the fraction of the B*T*k routed copies dropped for lack of capacity."""
  t, k, e = x.shape[1], experts.shape[-1], settings.num_experts
  cap = max(1, math.ceil(k * t * settings.capacity_factor / e))
  onehot, slots, kept = capacity_slots(experts, e, cap)
  dispatch = jnp.einsum("gske,gskc->gsec", onehot, slots).astype(dtype)
  combine = jnp.einsum("gske,gskc,gsk->gsec", onehot, slots, weights).astype(dtype)
  names = ("experts", "activation_batch", None, "activation_embed")
  xe = constrain(jnp.einsum("gsec,gsd->egcd", dispatch, x.astype(dtype)), names)
  gate = jnp.einsum("egcd,edf->egcf", xe, w["wi_gate"].astype(dtype))
  up = jnp.einsum("egcd,edf->egcf", xe, w["wi_up"].astype(dtype))
  ye = constrain(jnp.einsum("egcf,efd->egcd", nn.silu(gate) * up, w["wo"].astype(dtype)), names)
  y = jnp.einsum("gsec,egcd->gsd", combine, ye)
  return y, 1.0 - jnp.mean(kept)


class MoEBlock(nn.Module):
  """Top-k routed SwiGLU experts. float[B, T, D] -> float[B, T, D]; sows router statistics."""
  settings: MoESettings
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = self.settings
    e, d, f = s.num_experts, x.shape[-1], s.mlp_dim
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=-2,
                                            out_axis=-1, batch_axis=(0,))
    def kernel(name, shape, names):
      return self.param(name, partitioned(init, names), shape, self.param_dtype)
    w = {"wi_gate": kernel("wi_gate", (e, d, f), ("experts", "embed", "mlp")),
         "wi_up": kernel("wi_up", (e, d, f), ("experts", "embed", "mlp")),
         "wo": kernel("wo", (e, f, d), ("experts", "mlp", "embed"))}
    # The router is float32 whatever the compute dtype: bfloat16 logits flip top-k choices.
    router = self.param("router", partitioned(nn.initializers.normal(d ** -0.5), ("embed", None)),
                        (d, e), jnp.float32)
    b, t = x.shape[:2]
    logits = jnp.einsum("btd,de->bte", x.astype(jnp.float32), router).reshape(b * t, e)
    weights, experts, probs = route(logits, s.experts_per_token, s.norm_topk)
    stats = router_stats(logits, probs, experts)
    y, dropped = DISPATCHES.get(s.dispatch)(
        x, weights.reshape(b, t, -1), experts.reshape(b, t, -1), w, s, self.dtype)
    self.sow("moe", "stats", {**stats, "dropped": dropped})
    return constrain(y.astype(self.dtype), BATCH_LENGTH_EMBED)


def dense_reference(x, w, router, settings: MoESettings):
  """Every expert on every token, combined with the same top-k weights (zero elsewhere):
  the definition dropless dispatch must equal. float[B, T, D] -> float[B, T, D]."""
  b, t, d = x.shape
  logits = jnp.einsum("btd,de->bte", x.astype(jnp.float32), router).reshape(b * t, -1)
  weights, experts, _ = route(logits, settings.experts_per_token, settings.norm_topk)
  full = jnp.einsum("nk,nke->ne", weights, jax.nn.one_hot(experts, settings.num_experts))
  xf = x.reshape(b * t, d)
  h = nn.silu(jnp.einsum("nd,edf->nef", xf, w["wi_gate"])) * jnp.einsum("nd,edf->nef", xf,
                                                                          w["wi_up"])
  return jnp.einsum("ne,nef,efd->nd", full, h, w["wo"]).reshape(b, t, d)


def layer_stats(moe_collection) -> dict:
  """The sown 'moe' collection (scanned or not) -> each statistic over the L MoE layers:
  {"load_balance", "router_z", "dropped": float32[L], "load": float32[L, E]}."""
  found: dict[str, list] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(moe_collection)[0]:
    names = [getattr(p, "key", None) for p in path]
    name = next(n for n in reversed(names) if n in ("load_balance", "router_z", "dropped", "load"))
    # scanned layers stack on leading axes; `load` keeps its trailing expert axis
    found.setdefault(name, []).append(leaf.reshape((-1,) + leaf.shape[-1:]) if name == "load"
                                      else leaf.reshape(-1))
  return {name: jnp.concatenate(parts) for name, parts in found.items()}


def aux_terms(moe_collection, load_balance_weight: float, router_z_weight: float):
  """(auxiliary loss float32[], per-step statistics {MOE_METRICS name: float32[]}).

  Losses and statistics are means over the MoE layers (as Hugging Face's MoE decoders compute
  one balance loss over all layers' router logits), so the weights do not scale with depth.
  moe_load_max / moe_load_min: the busiest / idlest expert's load relative to uniform (1.0),
  per layer, averaged over layers.
  """
  stats = layer_stats(moe_collection)
  loss = (load_balance_weight * jnp.mean(stats["load_balance"])
          + router_z_weight * jnp.mean(stats["router_z"]))
  metrics = {"moe_load_balance_loss": jnp.mean(stats["load_balance"]),
             "moe_router_z_loss": jnp.mean(stats["router_z"]),
             "moe_dropped_fraction": jnp.mean(stats["dropped"]),
             "moe_load_max": jnp.mean(jnp.max(stats["load"], axis=-1)),
             "moe_load_min": jnp.mean(jnp.min(stats["load"], axis=-1))}
  return loss, metrics
