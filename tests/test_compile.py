"""`python -m mmscale.compile`: the real train step, the evaluation forward and generation
compiled for a TPU slice from this CPU-only machine (libtpu's topology descriptions), their
memory reports, and the does-not-fit message."""

import json

import pytest

from mmscale.compile import __main__ as compile_cli
from mmscale.compile import hlo, targets
from mmscale.compile import report as report_lib
from mmscale.models import flops as flops_lib
from mmscale import config as config_lib

pytest.importorskip("libtpu", reason="libtpu (the `test` extra, Linux only) compiles for TPU")

XS = "--config=configs/scaling/point.py:size=xs"


def test_target_names_resolve_to_cloud_topologies():
  cases = {"v5p-256": ("v5p:4x4x8", 128), "v5e-64": ("v5e:8x8", 64), "v5e-8": ("v5e:2x4", 8),
           "v5litepod-16": ("v5e:4x4", 16), "v4-8": ("v4:2x2x1", 4), "v6e-256": ("v6e:16x16", 256)}
  for name, (topology, chips) in cases.items():
    t = targets.resolve_target(name)
    assert (t.topology, t.num_chips) == (topology, chips), name
  assert targets.resolve_target("v5p-256", num_slices=2).num_devices == 256


@pytest.mark.parametrize("name, words", [("8xh100", "GPU targets cannot be compiled"),
                                         ("v9-8", "expected <generation>-<size>"),
                                         ("v5p-6", "power-of-two number of chips")])
def test_bad_targets_are_one_line_errors(name, words):
  with pytest.raises(targets.TargetError, match=words):
    targets.resolve_target(name)


def test_command_refuses_bad_input_in_one_line(capsys):
  for argv, words in (([XS, "--target=8xh100"], "GPU targets"),
                      ([XS], "--target is required"),
                      ([XS, "--target=v5e-4", "--step=eval,decode"], "unknown compile step"),
                      ([XS, "--target=v5e-4", "--config.mesh.shape.tensor=8"], "mesh.shape")):
    with pytest.raises(SystemExit) as exit_info:
      compile_cli.main(["compile"] + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err, err


def test_tiny_config_compiles_for_a_v5e_slice_and_fits(tmp_path, capsys):
  out = tmp_path / "report.json"
  assert compile_cli.main(["compile", XS, "--target=v5e-8", f"--out={out}"]) == 0
  printed = capsys.readouterr().out
  report = json.loads(out.read_text())
  assert "FITS: headroom" in printed and report["fits"] is True
  assert (report["topology"], report["devices"], report["mesh"]["data"]) == ("v5e:2x4", 8, 8)
  m = report["memory"]
  assert m["total"] == m["arguments"] + m["outputs"] + m["temporaries"] - m["aliased"]
  # The train state is an argument of the step (donated: aliased with its output).
  assert m["arguments"] >= report["state_bytes"] > 0 and m["aliased"] > 0
  assert 0 < m["total"] < report["hbm_bytes"] and 0.9 < report["headroom"] < 1
  c = config_lib.load_config("configs/scaling/point.py:size=xs")
  assert report["params"] == 198720
  assert report["flops_per_step"] == pytest.approx(
      c.data.batch_size * flops_lib.train_flops_per_sequence(c.model, c.data.seq_len,
                                                             c.data.max_images_per_seq))
  fast, slow = report["projections"][1], report["projections"][0]
  assert fast["step_seconds"] == pytest.approx(slow["step_seconds"] * 0.40 / 0.55)
  # Data parallelism: the gradients are all-reduced, at least once per scanned layer.
  assert report["collectives"]["all-reduce"]["count"] >= c.model.decoder.depth
  assert report["collectives"]["all-reduce"]["bytes"] >= 4 * report["params"]
  assert report["levers"] == []


def test_collectives_come_from_xla_dump_when_the_hlo_does_not_read_back(tmp_path, monkeypatch):
  """Compiled.as_text() fails on some programs (an INTERNAL RET_CHECK reading splash attention's
  async ops back in the 7B step); the report counts XLA's own text dump of the program instead."""
  import jax  # pylint: disable=import-outside-toplevel

  def unreadable(self):
    raise jax.errors.JaxRuntimeError("INTERNAL: RET_CHECK failure: async-update instruction")

  monkeypatch.setattr(jax.stages.Compiled, "as_text", unreadable)
  out = tmp_path / "report.json"
  assert compile_cli.main(["compile", XS, "--target=v5e-8", f"--out={out}"]) == 0
  report = json.loads(out.read_text())
  assert report["collectives"]["all-reduce"]["count"] >= 2
  assert report["attention"] == "splash" and report["kernel_calls"]["tpu_custom_call"] > 0


LONG = ["--target=v5e-4", "--config.data.seq_len=4096", "--config.data.batch_size=64"]


def test_oversized_config_does_not_fit_and_names_the_levers(capsys):
  # seq 4096: the XLA attention's float32 T x T scores alone are 1 GiB per head and row.
  code = compile_cli.main(["compile", XS, *LONG, "--config.model.attention=xla"])
  printed = capsys.readouterr().out
  assert code == 1
  assert "DOES NOT FIT" in printed and "exceeds available HBM (15.75G)" in printed
  assert "--config.optim.grad_accum_steps=" in printed and "(fits with 10% headroom)" in printed
  assert "--config.model.attention=auto" in printed and "attention: xla" in printed


@pytest.mark.slow
def test_the_tpu_step_uses_splash_attention_at_long_sequences_and_fits(tmp_path, capsys):
  # The default kernel choice at the same sequence length: on a TPU target 'auto' is splash,
  # whose forward and backward passes are Mosaic custom calls in the compiled HLO. One row per
  # chip keeps the compile to about a minute (the 64-row step that the XLA kernel cannot fit
  # fits with splash too, but its compile takes over three).
  out = tmp_path / "report.json"
  assert compile_cli.main(["compile", XS, *LONG, "--config.data.batch_size=4", f"--out={out}"]) == 0
  report = json.loads(out.read_text())
  assert report["attention"] == "splash" and report["fits"] is True
  # ViT + the scanned decoder body: forward, dq and dkv kernels of each
  assert report["kernel_calls"]["tpu_custom_call"] >= 6
  assert "attention: splash (fused kernels in the compiled step: tpu_custom_call x" in (
      capsys.readouterr().out)


def test_eval_and_generate_steps_compile_for_a_v5e_slice(tmp_path, capsys):
  out = tmp_path / "steps.json"
  assert compile_cli.main(["compile", XS, "--target=v5e-8", "--step=eval,generate",
                           "--max_new_tokens=6", f"--out={out}"]) == 0
  printed = capsys.readouterr().out
  reports = json.loads(out.read_text())
  assert set(reports) == {"eval", "generate"}
  assert printed.count("FITS: headroom") == 2 and "generate step for target v5e-8" in printed
  c = config_lib.load_config("configs/scaling/point.py:size=xs")
  rows = c.eval.batch_size - c.eval.batch_size % 8
  for kind, report in reports.items():
    m = report["memory"]
    assert report["step"] == kind and report["fits"] and report["global_batch"] == rows
    assert m["total"] == m["arguments"] + m["outputs"] + m["temporaries"] - m["aliased"]
    # params only, float32 and replicated on the data-parallel mesh (no optimizer state): an
    # argument of the step, not donated
    assert report["state_bytes"] == 4 * report["params"] <= m["arguments"] and m["aliased"] == 0
  model = c.model
  per_sequence = lambda t: report_lib.forward_flops_per_sequence(model, t,
                                                                 c.data.max_images_per_seq)
  assert reports["eval"]["flops_per_step"] == pytest.approx(rows * per_sequence(c.data.seq_len))
  generate = reports["generate"]
  assert (generate["seq_len"], generate["new_tokens"]) == (c.data.seq_len, 6)
  assert generate["flops_per_step"] == pytest.approx(rows * per_sequence(c.data.seq_len + 6))
  assert generate["projections"] == [] and "bound by memory bandwidth" in printed
  # the forward is 1/3 of the training FLOPs of the same sequence
  assert per_sequence(64) * 3 == pytest.approx(flops_lib.train_flops_per_sequence(
      model, 64, c.data.max_images_per_seq))


def test_generation_compiles_its_decode_loop_with_the_kv_cache():
  """The generate step is one program: the prefill, then a while loop of decode steps over a KV
  cache of prompt + generated tokens (keys and values of every layer in the model's dtype; not
  an argument of the step). With 16k tokens the cache is most of the program's memory; with 2
  it is not."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from mmscale.compile import step as step_lib  # pylint: disable=import-outside-toplevel
  c = config_lib.load_config("configs/scaling/point.py:size=xs")
  c.eval.batch_size = 8
  d = c.model.decoder
  devices = targets.resolve_target("v5e-4").devices()
  short = step_lib.compile_generate_step(c, devices, prompt_len=32, max_new_tokens=2)
  long = step_lib.compile_generate_step(c, devices, prompt_len=32, max_new_tokens=16384)
  assert " while(" in long.hlo and (long.rows, long.new_tokens) == (8, 16384)
  rows_per_device, head_dim = 8 // 4, d.head_dim or d.width // d.heads
  cache = (rows_per_device * (32 + 16384) * d.depth * 2 * d.kv_heads * head_dim
           * np.dtype(c.model.dtype).itemsize)
  # XLA's peak estimate holds the cache; its temporaries do not, so the verdict takes the peak
  assert short.memory["peak"] < cache <= long.memory["peak"]
  assert long.memory["temporaries"] < cache
  target = targets.resolve_target("v5e-4")
  assert report_lib.build_report(long, target)["needed_bytes"] == long.memory["peak"]


def test_inference_levers_halve_the_eval_batch_until_it_fits():
  """An eval step whose temporaries exceed the chip: the levers halve `eval.batch_size` (the
  temporaries scale with the rows, the params do not) until the estimate fits."""
  from mmscale.compile.step import CompiledStep  # pylint: disable=import-outside-toplevel
  from mmscale.spec import validate  # pylint: disable=import-outside-toplevel
  target = targets.resolve_target("v5e-4")
  c = config_lib.load_config("configs/scaling/point.py:size=xs")
  c.model.attention = "xla"  # the XLA attention: the kernel is a lever too
  spec = validate(c, 4, num_processes=1)
  hbm = target.chip.hbm_bytes
  memory = {"arguments": 1 << 30, "outputs": 0, "aliased": 0, "temporaries": 3 * hbm}
  memory["total"] = memory["arguments"] + memory["temporaries"]
  result = CompiledStep(kind="eval", rows=64, seq_len=64, new_tokens=0, spec=spec,
                        mesh_shape=dict(spec.mesh_shape), num_params=1000, compiled=None,
                        memory=memory, oom_message=None, state_bytes=4000, param_bytes=4000,
                        batch_bytes=0, replicated=[], hlo="")
  report = report_lib.build_report(result, target)
  assert not report["fits"]
  levers = [l for l in report["levers"] if l["estimated_total_bytes"] is not None]
  # all but the params scales with the rows: 32 rows need (1 GiB + 3 x HBM) / 2, 16 rows a
  # quarter of it, 12.1 GiB: under 90% of the 15.75 GiB
  assert [l["lever"] for l in levers] == [f"--config.eval.batch_size={r}" for r in (32, 16)]
  assert [l["fits"] for l in levers] == [False, True]
  needed = memory["total"]
  assert levers[-1]["estimated_total_bytes"] == int(4000 + (needed - 4000) * 16 / 64)
  assert "--config.model.attention=auto: the XLA attention" in report_lib.format_report(report)


HLO = """HloModule m

%body (p: (s32[], f32[8,128])) -> (s32[], f32[8,128]) {
  %p = (s32[], f32[8,128]) parameter(0)
  %x = f32[8,128]{1,0} get-tuple-element(%p), index=1
  %ar = f32[8,128]{1,0} all-reduce(%x), channel_id=1, to_apply=%add
  %ag-start = (bf16[2,64]{1,0}, bf16[8,64]{1,0}) all-gather-start(%y), dimensions={0}
  %ag = bf16[8,64]{1,0} all-gather-done(%ag-start)
}

%cond (p: (s32[], f32[8,128])) -> pred[] {
  %c = s32[] constant(12)
  ROOT %lt = pred[] compare(%i, %c), direction=LT
}

ENTRY %main (a: f32[8,128]) -> f32[8,128] {
  %w = (s32[], f32[8,128]) while(%t), condition=%cond, body=%body
  %rs = f32[2,128]{1,0} reduce-scatter(%a), dimensions={0}, to_apply=%add
}
"""


def test_collectives_are_counted_per_loop_iteration():
  found = hlo.collectives(HLO)
  assert found["all-reduce"] == {"count": 12, "bytes": 12 * 8 * 128 * 4}
  assert found["all-gather"] == {"count": 12, "bytes": 12 * 8 * 64 * 2}
  assert found["reduce-scatter"] == {"count": 1, "bytes": 2 * 128 * 4}


def test_pod_table_regenerates_a_row_between_its_markers(tmp_path):
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("pod_table_tool", "tools/pod_table.py")
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  doc = tmp_path / "pod_scale.md"
  doc.write_text("# title\n\n<!-- pod-table:start -->\nold\n<!-- pod-table:end -->\n\nafter\n")
  assert tool.main(["pod_table", "--row=configs/scaling/point.py:size=xs@v5e-8",
                    f"--out={doc}", f"--json_dir={tmp_path}"]) == 0
  text = doc.read_text()
  assert text.startswith("# title\n") and text.endswith("\n\nafter\n") and "old" not in text
  assert "python tools/pod_table.py --row=configs/scaling/point.py:size=xs@v5e-8" in text
  row = [l for l in text.splitlines() if l.startswith("| `point:size=xs`")]
  assert len(row) == 1 and "| v5e-8 | 8, 1, 1 | 1 | splash (6 kernels) | 0.00B |" in row[0]
  assert "| yes (" in row[0]
  assert len(list(tmp_path.glob("*.json"))) == 1


def test_multislice_target_puts_slices_on_the_data_axis():
  from mmscale.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  devices = targets.resolve_target("v5e-4", num_slices=2).devices()
  assert len(devices) == 8 and {d.slice_index for d in devices} == {0, 1}
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 4, "tensor": 1, "expert": 1}, list(devices))
  slices = [{d.slice_index for d in mesh.devices[i].flat} for i in range(2)]
  assert slices == [{0}, {1}]  # only the data axis crosses slices (DCN)


def test_topology_compiles_write_nothing_to_the_persistent_cache():
  # A compile-only client cannot load an executable back, so while the tool compiles, JAX's
  # persistent cache (on in this suite) must not store: its minimum compile time is infinite,
  # and the setting is restored afterwards, also when the compile fails.
  import jax  # pylint: disable=import-outside-toplevel
  from mmscale.compile import step as step_lib  # pylint: disable=import-outside-toplevel
  seen = []

  class OutOfMemoryLowering:
    def compile(self, compiler_options):
      del compiler_options
      seen.append(jax.config.jax_persistent_cache_min_compile_time_secs)
      raise RuntimeError("RESOURCE_EXHAUSTED: the total memory required for HLO temporaries "
                         "(19.75G) exceeds available HBM (15.75G)")

  before = jax.config.jax_persistent_cache_min_compile_time_secs
  compiled, memory, oom, _ = step_lib._compile(OutOfMemoryLowering())  # pylint: disable=protected-access
  assert seen == [float("inf")] and compiled is None and "exceeds available HBM" in oom
  assert memory["available"] == int(15.75 * 1024 ** 3)
  assert jax.config.jax_persistent_cache_min_compile_time_secs == before
