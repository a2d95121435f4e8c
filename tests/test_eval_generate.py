"""Generation: KV-cache decoding equals full recompute token for token (greedy, sampled, with
stop tokens, interleaved multi-image prompts, two combined passes), and runs sharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmscale.data.batch import BatchLayout, one_per_row
from mmscale.eval import generate, sampling
from mmscale.models.registry import build_model
from mmscale.testing import numpy_init, synthetic_batch, tiny_model_config

N = 6


@pytest.fixture(scope="module")
def setup():
  cfg = tiny_model_config()
  model = build_model(cfg)
  batch = synthetic_batch(cfg, batch=4, seq_len=24, num_images=2)
  params = numpy_init(model, batch)["params"]
  params_b = numpy_init(model, batch, seed=1)["params"]
  examples = []
  # Ragged interleaved prompts (two images each, tokens 1..18): left padding differs per row.
  for row, n in enumerate((24, 20, 22, 21)):
    examples.append({"tokens": batch["tokens"][row, :n], "mask_ar": batch["mask_ar"][row, :n],
                     "images": batch["images"][row],
                     "image_positions": batch["image_positions"][row]})
  layout = BatchLayout(seq_len=24, max_images=2, tokens_per_image=cfg.connector.num_tokens,
                       image_size=cfg.vit.image_size)
  prompt = one_per_row(examples, layout, pad="left")
  return model, params, params_b, prompt


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (1.0, 0.9)])
def test_cache_equals_recompute(setup, temperature, top_p):
  model, params, _, prompt = setup
  kw = dict(max_new_tokens=N, temperature=temperature, top_p=top_p, rng=jax.random.key(3))
  cached = generate.generate(model, params, prompt, **kw)
  full = generate.generate(model, params, prompt, use_cache=False, **kw)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(full))
  assert cached.shape == (4, N)


def test_greedy_wrappers_and_sampling_differs(setup):
  model, params, _, prompt = setup
  greedy = generate.greedy_generate(model, params, prompt, max_new_tokens=N)
  np.testing.assert_array_equal(
      np.asarray(greedy),
      np.asarray(generate.greedy_generate_recompute(model, params, prompt, max_new_tokens=N)))
  sampled = [np.asarray(generate.generate(model, params, prompt, max_new_tokens=N,
                                          temperature=5.0, rng=jax.random.key(s)))
             for s in (0, 0, 1)]
  np.testing.assert_array_equal(sampled[0], sampled[1])  # seeded
  assert (sampled[0] != sampled[2]).any()


def test_stop_tokens_pad_the_rest(setup):
  model, params, _, prompt = setup
  free = np.asarray(generate.generate(model, params, prompt, max_new_tokens=N))
  stop = int(free[0, 1])
  out = np.asarray(generate.generate(model, params, prompt, max_new_tokens=N, stop_ids=(stop,),
                                     pad_id=0))
  full = np.asarray(generate.generate(model, params, prompt, max_new_tokens=N, stop_ids=(stop,),
                                      pad_id=0, use_cache=False))
  np.testing.assert_array_equal(out, full)
  for row in range(4):
    hits = np.flatnonzero(free[row] == stop)
    if len(hits):
      first = hits[0]
      np.testing.assert_array_equal(out[row, :first + 1], free[row, :first + 1])
      assert (out[row, first + 1:] == 0).all()
    else:
      np.testing.assert_array_equal(out[row], free[row])
  first = int(np.flatnonzero(free[0] == stop)[0])
  assert generate.cut_at_stop(out[:1], (stop,)) == [free[0, :first].tolist()]


def contrast(pass_logits, step):
  """Contrastive combination of two passes (the shape of `contrastive.tccd_processor`)."""
  del step
  return 2.0 * pass_logits[0] - pass_logits[1]


def drop_images(batch):
  return dict(batch, image_positions=jnp.full_like(batch["image_positions"],
                                                   batch["tokens"].shape[1]))


def test_two_pass_logits_processor(setup):
  model, params, params_b, prompt = setup
  passes = (generate.Pass(model), generate.Pass(model, prompt_fn=drop_images))
  kw = dict(max_new_tokens=N, logits_processor=contrast)
  cached = generate.generate(passes, (params, params_b), prompt, **kw)
  full = generate.generate(passes, (params, params_b), prompt, use_cache=False, **kw)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(full))
  single = generate.generate(model, params, prompt, max_new_tokens=N)
  assert (np.asarray(cached) != np.asarray(single)).any()


def test_top_p_keeps_the_nucleus():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
  kept = np.isfinite(np.asarray(sampling.top_p_mask(logits, 0.75)))
  np.testing.assert_array_equal(kept, [[True, True, False, False]])
  kept = np.isfinite(np.asarray(sampling.top_p_mask(logits, 0.1)))
  np.testing.assert_array_equal(kept, [[True, False, False, False]])
