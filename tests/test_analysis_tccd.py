"""TCCD (mmscale/analysis/decoding.py): alpha = 0 is plain greedy decoding; the cut-off and
the sign convention of the contrast."""

import jax.numpy as jnp
import numpy as np

from mmscale.analysis import centroids as centroids_lib
from mmscale.analysis import decoding
from mmscale.eval import generate
from mmscale.models import build_model
from mmscale.testing import numpy_init, synthetic_batch, tiny_model_config


def test_tccd_logits_sign_and_cutoff():
  full = jnp.log(jnp.asarray([[0.6, 0.3, 0.1]]))
  ref = jnp.log(jnp.asarray([[0.7, 0.1, 0.2]]))
  out = np.asarray(decoding.tccd_logits(full, ref, 1.0, 0.2))
  assert np.isneginf(out[0, 2])  # 0.1 < 0.2 * 0.6: cut off although the contrast favours it
  np.testing.assert_allclose(out[0, :2], 2 * np.asarray(full)[0, :2] - np.asarray(ref)[0, :2],
                             rtol=1e-6)
  assert np.argmax(out) == 1  # the token the reference explains less wins after contrast
  assert np.argmax(np.asarray(decoding.tccd_logits(full, ref, 0.0, 0.2))) == 0


def test_tccd_alpha_zero_is_plain_greedy():
  cfg = tiny_model_config()
  model = build_model(cfg)
  batch = synthetic_batch(cfg, batch=2, seq_len=16, seed=1)
  params = numpy_init(model, batch)["params"]
  depth, width = cfg.decoder.depth, cfg.decoder.width
  rng = np.random.default_rng(0)
  cset = centroids_lib.CentroidSet(
      layers=(0, 1), k=3, centroids={"text": rng.normal(size=(2, 3, width)).astype(np.float32)})
  text = centroids_lib.erase_layers(cset, "text", depth)
  plain = np.asarray(generate.greedy_generate(model, params, batch, max_new_tokens=4))
  tccd = np.asarray(decoding.tccd_generate(model, params, batch, text, 0.0, 0.1,
                                              max_new_tokens=4))
  np.testing.assert_array_equal(tccd, plain)
  other = np.asarray(decoding.tccd_generate(model, params, batch, text, 3.0, 0.0,
                                               max_new_tokens=4))
  assert other.shape == plain.shape  # same compilation, a different alpha / beta
  erased = np.asarray(decoding.erased_generate(model, params, batch, None, max_new_tokens=4))
  np.testing.assert_array_equal(erased, plain)
