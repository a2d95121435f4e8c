"""Two real JAX processes on localhost (4 simulated CPU devices each, gloo collectives) read
disjoint records whose union is the whole dataset, build a global batch from their local
slices, and resume their iterators exactly."""

import io
import json
import os
import socket
import subprocess
import sys

import pytest
from PIL import Image

from mmscale.data import records
from mmscale.data import tokenizer as tokenizer_lib

N, GLOBAL_BATCH, T = 32, 8, 24

WORKER = r'''
import json, sys
import jax
import numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")
root, port, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                           process_id=pid)
from jax.sharding import NamedSharding, PartitionSpec
from mmscale.data import pipeline, tokenizer
from mmscale.data.batch import BatchLayout
from mmscale.testing import data_config

cfg = data_config(
    world_dir=root, mixture={"caption": 1.0}, seq_len=%(T)d, max_images_per_seq=1, pack=False,
    batch_size=%(B)d, shuffle_seed=5, max_skip_fraction=0.0, log_every_batches=0)
model = BatchLayout(seq_len=%(T)d, max_images=1, tokens_per_image=4, image_size=8)
tok = tokenizer.Tokenizer(root + "/tokenizer.model")
make = lambda: pipeline.make_train_iterator(cfg, model, tok, process_index=jax.process_index(),
                                            process_count=jax.process_count(), seed=1)
it = make()
words, batch = [], None
for _ in range(%(N)d // %(B)d):  # one epoch of this process's slice: one example per row
  batch = next(it)
  for row in batch["tokens"]:
    words += [tok.decode([int(t)]) for t in row if t > tok.image_id]
mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
glob = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("data")),
                                              batch["tokens"])
nonpad = int(jax.jit(lambda x: (x > 0).sum())(glob))
state = it.get_state()
want = [next(it) for _ in range(3)]
it2 = make()
it2.set_state(json.loads(json.dumps(state)))
same = all(np.array_equal(a[k], b[k]) for a, b in zip(want, [next(it2) for _ in range(3)])
           for k in a)
print("RESULT " + json.dumps({"words": words, "global_shape": list(glob.shape),
                               "nonpad": nonpad, "resume_same": same}))
''' % {"T": T, "B": GLOBAL_BATCH, "N": N}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture()
def dataset(tmp_path):
  buf = io.BytesIO()
  Image.new("RGB", (8, 8), (10, 200, 30)).save(buf, format="PNG")
  records.write_records(str(tmp_path / "arms" / "caption"), [
      {"id": str(i), "kind": "caption", "images": [buf.getvalue()],
       "segments": [{"image": 0}, {"text": f"u{i}", "loss": True}]} for i in range(N)],
      num_shards=3, source="test")
  (tmp_path / "corpus.txt").write_text(" ".join(f"u{i}" for i in range(N)) + "\n")
  tokenizer_lib.train_tokenizer([str(tmp_path / "corpus.txt")], str(tmp_path / "tokenizer"),
                                vocab_size=N + 6, model_type="word")
  tok = tokenizer_lib.Tokenizer(str(tmp_path / "tokenizer.model"))
  assert all(len(ids) == 1 and ids[0] > tok.image_id
             for ids in (tok.encode(f"u{i}") for i in range(N)))
  return str(tmp_path)


def test_two_processes_read_disjoint_slices_and_resume(dataset):
  port = free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", WORKER, dataset, str(port), str(p)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for p in range(2)]
  results = []
  for p in procs:
    out, err = p.communicate(timeout=180)
    assert p.returncode == 0, err[-3000:]
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    results.append(json.loads(line[len("RESULT "):]))
  a, b = (set(r["words"]) for r in results)
  assert len(results[0]["words"]) == len(a) == N // 2 and len(b) == N // 2
  assert not a & b
  assert a | b == {f"u{i}" for i in range(N)}
  for r in results:
    assert r["global_shape"] == [GLOBAL_BATCH, T]
    assert r["resume_same"]
  assert results[0]["nonpad"] == results[1]["nonpad"] > 0
