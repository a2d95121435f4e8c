"""The base install runs without the optional extras: a missing one is one line naming it, and
metrics are written to TensorBoard files without TensorFlow."""

import runpy
import struct
import sys

import pytest

from mmscale import extras
from mmscale.train import metrics, tbx_writer


def test_missing_extra_names_the_pip_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "apache_beam", None)  # `import apache_beam` now fails
  with pytest.raises(extras.MissingExtraError) as e:
    extras.require("apache_beam", "ingestion")
  assert str(e.value) == ("ingestion needs Apache Beam: Apache Beam is not installed; "
                          "install it with: pip install 'mmscale[beam]'")
  assert isinstance(e.value, ImportError)


def test_installed_extra_is_returned():
  assert extras.require("apache_beam").__name__ == "apache_beam"
  with pytest.raises(KeyError):
    extras.require("numpy")


@pytest.mark.parametrize("tool", ["tools/enrich.py", "tools/ingest.py"])
def test_tool_without_beam_exits_with_one_line(monkeypatch, capsys, tool):
  monkeypatch.setitem(sys.modules, "apache_beam", None)
  with pytest.raises(SystemExit) as e:
    runpy.run_path(tool, run_name="not_main")
  assert e.value.code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: {tool} needs Apache Beam: Apache Beam is not installed; "
                 "install it with: pip install 'mmscale[beam]'"]


def test_tfds_source_without_tfds(monkeypatch):
  from mmscale.data.ingest import tfds_source  # pylint: disable=import-outside-toplevel
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(extras.MissingExtraError, match=r"pip install 'mmscale\[tfds\]'"):
    tfds_source.open_data_source("mnist", "train")


def _scalars(logdir, tag):
  """(step, value) of `tag` from the event files, read as TFRecords of tensorboardX's Event
  protos (TensorBoard's own reader imports TensorFlow, which takes ~25 s here)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  out = []
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4  # length, its crc, the record, its crc
      out += [(event.step, pytest.approx(v.simple_value)) for v in event.summary.value
              if v.tag == tag]
  return out


def test_writer_without_tensorflow_writes_tensorboard_files(monkeypatch, tmp_path):
  monkeypatch.setattr(extras, "available", lambda module: module != "tensorflow")
  writer = metrics.create_writer(str(tmp_path))
  assert isinstance(writer, tbx_writer.TensorboardXWriter)
  writer.write_hparams({"optim.lr": 1e-3, "model.name": "mllm", "mesh.shape": (1, 2)})
  writer.write_scalars(1, {"loss": 2.5})
  writer.write_scalars(2, {"loss": 2.0})
  progress = metrics.create_progress(10, writer)
  assert isinstance(progress, tbx_writer.ProgressLogger)
  progress.every_secs = 0
  progress(1)
  progress(3)
  writer.close()
  assert _scalars(tmp_path, "loss") == [(1, 2.5), (2, 2.0)]
  assert [s for s, _ in _scalars(tmp_path, "steps_per_sec")] == [3]


def test_writer_with_tensorflow_is_clus(tmp_path):
  from clu import metric_writers  # pylint: disable=import-outside-toplevel
  writer = metrics.create_writer(str(tmp_path))
  assert isinstance(writer, metric_writers.MetricWriter)
  writer.close()
