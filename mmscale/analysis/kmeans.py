"""Weighted K-means in JAX: k-means++ initialisation, Lloyd iterations to a tolerance, sharded.

Points may be sharded over the batch mesh axes and centroids are replicated: every step is a
distance matmul (local to a shard) followed by per-cluster sums (an all-reduce over the shards),
which XLA derives from the input shardings - the same code runs on one device or a pod, and
gives the same answer up to float summation order. Weights (0 or 1 here) let padded / foreign
points ride along with fixed shapes, so nothing is compacted on device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmscale.errors import DataError

HIGHEST = jax.lax.Precision.HIGHEST  # TPU/GPU matmuls default to bf16 passes; distances need f32


def _scores(points, centroids):
  """|c|^2 - 2 x.c: float[N, C]; the squared distance minus |x|^2 (constant per point)."""
  cross = jnp.einsum("nd,cd->nc", points, centroids, precision=HIGHEST)
  return jnp.sum(jnp.square(centroids), axis=-1)[None, :] - 2.0 * cross


def _sq_dist(points, centroid):
  """float[N]: squared distance of each point to one centroid float[D] (clamped at 0)."""
  d = jnp.sum(jnp.square(points), -1) - 2.0 * jnp.dot(points, centroid, precision=HIGHEST)
  return jnp.maximum(d + jnp.sum(jnp.square(centroid)), 0.0)


def kmeans_pp_init(points, weights, k: int, key) -> jax.Array:
  """k-means++: the first centroid drawn by weight, each next one with probability proportional
  to weight x squared distance to the nearest chosen centroid. float[N, D] -> float[k, D].

  When every remaining point coincides with a chosen centroid (fewer distinct points than k),
  it falls back to drawing by weight, so duplicates appear instead of NaNs.
  """
  d = points.shape[1]
  log_w = jnp.log(weights)
  keys = jax.random.split(key, k)
  first = points[jax.random.categorical(keys[0], log_w)]
  centroids = jnp.zeros((k, d), points.dtype).at[0].set(first)
  nearest = _sq_dist(points, first)

  def body(i, carry):
    centroids, nearest = carry
    mass = weights * nearest
    logits = jnp.where(jnp.sum(mass) > 0, jnp.log(mass), log_w)
    c = points[jax.random.categorical(keys[i], logits)]
    return centroids.at[i].set(c), jnp.minimum(nearest, _sq_dist(points, c))

  centroids, _ = jax.lax.fori_loop(1, k, body, (centroids, nearest))
  return centroids


def lloyd_step(points, weights, centroids):
  """One assignment + update. Returns (new centroids float[k, D], weighted inertia float[]).

  An empty cluster keeps its centroid (no re-seeding: a deterministic, jit-able rule).
  """
  assign = jnp.argmin(_scores(points, centroids), axis=-1)
  hard = jax.nn.one_hot(assign, centroids.shape[0], dtype=points.dtype)
  # The inertia from explicit differences: |x|^2 - 2 x.c + |c|^2 cancels badly far from 0.
  nearest = jnp.einsum("nc,cd->nd", hard, centroids, precision=HIGHEST)
  inertia = jnp.sum(weights * jnp.sum(jnp.square(points - nearest), -1))
  onehot = hard * weights[:, None]
  counts = jnp.sum(onehot, axis=0)
  sums = jnp.einsum("nc,nd->cd", onehot, points, precision=HIGHEST)
  new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1e-12)[:, None], centroids)
  return new, inertia


@functools.partial(jax.jit, static_argnames=("k", "max_iters"))
def kmeans(points, weights, key, *, k: int, max_iters: int = 100, tol: float = 1e-5):
  """Weighted K-means. points float32[N, D], weights float32[N] (0 = ignore).

  Stops after `max_iters` Lloyd steps or once the inertia improves by less than `tol` (relative).
  Returns (centroids float32[k, D], inertia float32[] of the returned centroids' assignment,
  iterations int32[]).
  """
  init = kmeans_pp_init(points, weights, k, key)

  # carry: (centroids, inertia two steps back, inertia one step back, steps taken); a step
  # reports the inertia of the centroids it started from.
  def cond(carry):
    _, prev, cur, it = carry
    return (it < max_iters) & (prev - cur > tol * jnp.maximum(cur, 1e-30))

  def body(carry):
    c, _, cur, it = carry
    new, inertia = lloyd_step(points, weights, c)
    return new, cur, inertia, it + 1

  start = (init, jnp.float32(jnp.inf), jnp.finfo(jnp.float32).max, jnp.int32(0))
  centroids, _, _, iters = jax.lax.while_loop(cond, body, start)
  _, inertia = lloyd_step(points, weights, centroids)
  return centroids, inertia, iters


def fit(points: np.ndarray, k: int, *, seed: int = 0, max_iters: int = 100, tol: float = 1e-5,
        mesh: Mesh | None = None, axes: tuple[str, ...] = ("data", "fsdp")):
  """K-means of host points float[N, D]; sharded over `axes` of `mesh` when given.

  N is padded with zero-weight points to a multiple of the shard count; centroids come back
  replicated. Returns (centroids np.float32[k, D], inertia float, iterations int).
  """
  points = np.asarray(points, np.float32)
  weights = np.ones(len(points), np.float32)
  if len(points) < k:
    raise DataError(f"k-means with k={k} needs at least k points, got {len(points)} (lower --k "
                    "or give more examples)")
  key = jax.random.key(seed)
  if mesh is None:
    out = kmeans(points, weights, key, k=k, max_iters=max_iters, tol=tol)
  else:
    shards = int(np.prod([mesh.shape[a] for a in axes]))
    pad = -len(points) % shards
    points = np.concatenate([points, np.zeros((pad, points.shape[1]), np.float32)])
    weights = np.concatenate([weights, np.zeros(pad, np.float32)])
    rows = NamedSharding(mesh, P(axes))
    points, weights = jax.device_put(points, rows), jax.device_put(weights, rows)
    out = kmeans(points, weights, key, k=k, max_iters=max_iters, tol=tol)
  centroids, inertia, iters = out
  return np.asarray(centroids), float(inertia), int(iters)
