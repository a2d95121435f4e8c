"""K-means (mmscale/analysis/kmeans.py): recovers separated clusters; sharded == unsharded."""

import jax
import numpy as np
from jax.sharding import AxisType

from mmscale.analysis import kmeans


def _blobs(n_per=100, k=4, d=8, seed=0):
  rng = np.random.default_rng(seed)
  means = rng.normal(0, 10.0, (k, d)).astype(np.float32)
  points = np.concatenate([m + rng.normal(0, 0.3, (n_per, d)) for m in means]).astype(np.float32)
  return points[rng.permutation(len(points))], means


def test_recovers_well_separated_clusters():
  points, means = _blobs()
  centroids, inertia, iters = kmeans.fit(points, 4, seed=1)
  dist = np.linalg.norm(means[:, None] - centroids[None], axis=-1)  # [true, found]
  assert sorted(np.argmin(dist, axis=1).tolist()) == [0, 1, 2, 3]  # a one-to-one match
  assert np.max(np.min(dist, axis=1)) < 0.15
  assert inertia / len(points) < 8 * 0.3 ** 2 * 1.3 and 1 <= iters < 100


def test_sharded_equals_unsharded():
  points, _ = _blobs(n_per=50, k=6, d=5, seed=3)
  points = points[:296]  # 296 = 8 x 37, so both runs see the same points (no padding)
  mesh = jax.make_mesh((8, 1), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)  # as mesh.py
  single = kmeans.fit(points, 6, seed=2, max_iters=20)
  sharded = kmeans.fit(points, 6, seed=2, max_iters=20, mesh=mesh)
  np.testing.assert_allclose(sharded[0], single[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(sharded[1], single[1], rtol=1e-5)
  assert sharded[2] == single[2]
