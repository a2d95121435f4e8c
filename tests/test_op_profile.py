"""bench/op_profile.py sums a jax.profiler trace's op events by kind, matmuls apart."""

import jax
import jax.numpy as jnp
import pytest

from conftest import load_bench_module


def _module():
  return load_bench_module("op_profile")


def test_a_traced_matmul_is_counted_as_a_matmul(tmp_path):
  op_profile = _module()
  a = jnp.ones((256, 256), jnp.float32)
  fn = jax.jit(lambda a: jnp.exp(a @ a))
  fn(a).block_until_ready()
  jax.profiler.start_trace(str(tmp_path))
  for _ in range(2):
    fn(a).block_until_ready()
  jax.profiler.stop_trace()
  summary = op_profile.summarize(op_profile.find_trace(str(tmp_path)), steps=2)
  assert summary["matmul_ms_per_step"] > 0, summary["kinds"]
  assert summary["ms_per_step"] > summary["matmul_ms_per_step"]  # the exp is not a matmul
  assert not any("::" in kind or kind.startswith(("PjitFunction", "$")) for kind in summary["kinds"])
  assert summary["modules"] and all(m.startswith("jit_") for m in summary["modules"])
  assert summary["ops_per_step"] >= 1 and summary["idle_ms_per_step"] >= 0


def test_idle_time_is_the_span_no_interval_covers():
  idle_ms = _module().idle_ms
  assert idle_ms([(0, 2), (1, 3), (5, 6)]) == 2  # 3..5
  assert idle_ms([(5, 6), (0, 10)]) == 0  # nested, given out of order
  assert idle_ms([]) == 0


def test_a_directory_without_a_trace_is_one_clear_line(tmp_path):
  with pytest.raises(SystemExit, match="no \\*.trace.json.gz under .*profile_steps"):
    _module().find_trace(str(tmp_path))


def test_op_time_is_summed_by_source_with_the_layers_added_up(tmp_path):
  op_profile = _module()
  a = jnp.ones((128, 128), jnp.float32)

  def two_layers(a):
    for i in range(2):
      with jax.named_scope(f"layers_{i}"):
        a = jnp.tanh(a @ a)
    return a

  fn = jax.jit(two_layers)
  fn(a).block_until_ready()
  sources = op_profile.op_sources(fn.lower(a).compile().as_text())
  assert sources and all("layers_*" in s for s in sources.values() if "layers" in s)
  jax.profiler.start_trace(str(tmp_path))
  fn(a).block_until_ready()
  jax.profiler.stop_trace()
  totals = op_profile.by_source(op_profile.op_events(op_profile.find_trace(str(tmp_path))), 1,
                                sources)
  assert any("layers_*" in source for source in totals), totals
  assert not any("layers_0" in source or "layers_1" in source for source in totals), totals
