"""tfds datasets in array_record format: ingestion through tfds' reading API and streaming as a
mixture component through grain (`tfds.data_source`), on a tiny builder built here, offline."""

import io

import numpy as np
import pytest
from PIL import Image

from mmscale.data import pipeline, records
from mmscale.data.batch import BatchLayout
from mmscale.testing import data_config
from mmscale.data import tokenizer as tokenizer_lib
from mmscale.data.ingest import beam_job, common

N_TRAIN = 6
WORDS = "a small red green blue square circle picture of number".split()


def image(i: int) -> np.ndarray:
  return np.random.default_rng(i).integers(0, 256, (8 + i, 10, 3), dtype=np.uint8)


def caption(i: int) -> str:
  return f"a picture of a {WORDS[2 + i % 3]} {WORDS[5 + i % 2]}"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  class TinyCaps(tfds.core.GeneratorBasedBuilder):
    """Images of varying height with one caption each."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 3)),
          "caption": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(N_TRAIN)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {"image": image(i), "caption": caption(i)}

  root = str(tmp_path_factory.mktemp("tfds"))
  TinyCaps(data_dir=root, file_format="array_record").download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return root


def test_ingest_tfds_roundtrips(tfds_dir, tmp_path):
  out = str(tmp_path / "out")
  m = beam_job.run_ingest(
      "tfds", "tiny_caps", out, num_shards=2,
      options=common.IngestOptions(split="train", data_dir=tfds_dir),
      beam_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
  assert m["num_records"] == N_TRAIN and m["counts"] == {"caption": N_TRAIN}
  seen = set()
  for r in records.iter_records(out):
    pix = np.asarray(Image.open(io.BytesIO(r["images"][0])).convert("RGB"))
    i = pix.shape[0] - 8  # tfds shuffles on write: recover the example from its height
    np.testing.assert_array_equal(pix, image(i))
    assert r["segments"][1]["text"] == caption(i)
    seen.add(i)
  assert seen == set(range(N_TRAIN))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  root = tmp_path_factory.mktemp("tok")
  (root / "c.txt").write_text("\n".join([" ".join(WORDS)] * 10) + "\n")
  return tokenizer_lib.Tokenizer(tokenizer_lib.train_tokenizer(
      [str(root / "c.txt")], str(root / "tok"), vocab_size=24, model_type="word"))


def test_tfds_and_record_dir_as_mixture_components(tfds_dir, tok, tmp_path):
  rec_dir = str(tmp_path / "recs")
  records.write_records(rec_dir, [
      {"id": f"t{i}", "kind": "text", "images": [],
       "segments": [{"text": "a small blue circle", "loss": True}]} for i in range(5)],
      source="test")
  cfg = data_config(
      world_dir=str(tmp_path / "no_world"), mixture={"caps": 3.0, "txt": 1.0},
      sources={"caps": {"type": "tfds", "name": "tiny_caps", "split": "train",
                        "data_dir": tfds_dir},
               "txt": {"type": "records", "dir": rec_dir}},
      seq_len=32, max_images_per_seq=2, pack=True, batch_size=4, shuffle_seed=0,
      max_skip_fraction=0.0, resize="pad", log_every_batches=2)
  model = BatchLayout(seq_len=32, max_images=2, tokens_per_image=4, image_size=8)
  it = pipeline.make_train_iterator(cfg, model, tok, process_index=0, process_count=1, seed=0)
  batches = [next(it) for _ in range(3)]
  assert batches[0]["images"].shape == (4, 2, 8, 8, 3)
  assert (batches[0]["tokens"] == tok.image_id).any()
  stats = pipeline.pipeline_stats(it)
  assert set(stats["arms"]) == {"caps", "txt"} and stats["skipped"] == 0
  state = it.get_state()
  want = [next(it) for _ in range(2)]
  it2 = pipeline.make_train_iterator(cfg, model, tok, process_index=0, process_count=1, seed=0)
  it2.set_state(state)
  for a, b in zip(want, [next(it2) for _ in range(2)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
