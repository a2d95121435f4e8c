"""Every stage of the engine runs end to end as a Beam pipeline on a tiny record directory;
reruns resume (finished shards skipped; LLM answers from the cache)."""
import json
import os
import zlib

import pytest

from mmscale.data import records, world
from mmscale.knowledge import descriptors, jobs, pairing, parse
from mmscale.knowledge import vocab as vocab_lib
from mmscale.knowledge.llm.loopback import LoopbackServer

WORLD = []
BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


@pytest.fixture(scope="module")
def kworld(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("jworld"))
  world.build_world(out, num_scenes=120, num_eval_scenes=5, seed=2, train_tok=False)
  WORLD[:] = [out]
  return out


def run(stage, src, out, **kw):
  kw.setdefault("vocab", WORLD[0])
  cfg = jobs.JobConfig(stage=stage, input_dir=str(src), out_dir=str(out), **kw)
  return jobs.run(cfg, BEAM)


def test_all_stages_end_to_end(kworld, tmp_path):
  arms = os.path.join(kworld, "arms")
  s = run("describe", os.path.join(arms, "caption"), tmp_path / "desc", num_shards=3)
  assert s["complete"] and s["kept"] == 120 and s["failed"] == {}
  recs = list(records.iter_records(tmp_path / "desc"))
  assert sorted(r["id"] for r in recs) == sorted(
      r["id"] for r in records.iter_records(os.path.join(arms, "caption")))
  assert all(r["meta"]["provenance"][-1]["stage"] == "describe" for r in recs)

  s = run("enrich", tmp_path / "desc", tmp_path / "enr")
  assert s["complete"] and s["kept"] == 120
  rec = next(records.iter_records(tmp_path / "enr"))
  assert " : family " in rec["segments"][-1]["text"]  # injected facts

  cfg = {"lower": 0.5, "upper": 0.95, "max_pairs": 2, "max_block": 64}
  s = run("pair", os.path.join(arms, "enriched"), tmp_path / "pair", pair=cfg, num_shards=2)
  assert s["complete"] and s["kept"] > 10
  pairs = list(records.iter_records(tmp_path / "pair"))
  for p in pairs:
    da, db = p["meta"]["pair"]["descriptors"]
    assert pairing.pair_ok(da, db, p["meta"]["pair"]["similarity"],
                           pairing.PairConfig(**{**cfg, "max_block": 64}))
  s = run("compare", tmp_path / "pair", tmp_path / "cmp")
  assert s["complete"] and s["kept"] == len(pairs)
  s = run("filter", tmp_path / "cmp", tmp_path / "filt")
  assert s["complete"] and s["kept"] + sum(s["rejected"].values()) == len(pairs)
  kept = list(records.iter_records(tmp_path / "filt"))
  assert all(r["kind"] == "pair" and len(r["images"]) == 2 and "comparison" in r["descriptor"]
             for r in kept)

  s = run("vqa2caption", os.path.join(arms, "vqa"), tmp_path / "v2c", num_shards=2)
  assert s["complete"] and s["kept"] == 120
  truth = {r["meta"]["scene_id"]: r["segments"][1]["text"]
           for r in records.iter_records(os.path.join(arms, "vqa_as_caption"))}
  for r in records.iter_records(tmp_path / "v2c"):
    assert r["segments"][1]["text"] == truth[r["meta"]["scene_id"]]

  s = run("caption2vqa", os.path.join(arms, "enriched"), tmp_path / "c2v")
  assert s["complete"] and s["records_out"] > 120
  assert records.read_manifest(tmp_path / "c2v")["counts"] == {"vqa": s["records_out"]}


def test_rerun_skips_finished_shards(kworld, tmp_path):
  src = os.path.join(kworld, "arms", "knowledge")
  first = run("describe", src, tmp_path / "d", num_shards=4)
  again = run("describe", src, tmp_path / "d", num_shards=4)
  assert first["shards_skipped"] == 0 and again["shards_skipped"] == 4
  assert again["kept"] == 120 and again["complete"]


def test_openai_job_resumes_after_a_crash_without_resending(kworld, tmp_path):
  voc = vocab_lib.load_vocabulary(kworld)
  down = {"on": True}

  def answer(task, payload):
    return parse.describe(payload["caption"], voc, payload["grounding"])

  def fault(key, attempt):
    return ("500", None) if down["on"] and "red" in key else None

  src = os.path.join(kworld, "arms", "caption")
  with LoopbackServer(answer, fault, key=lambda p: p["caption"]) as server:
    kw = dict(backend="openai", num_shards=4, batch_size=8, vocab=kworld,
              backend_kwargs={"endpoint": server.endpoint, "model": "m", "concurrency": 8,
                              "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.02})
    s = run("describe", src, tmp_path / "o", **kw)
    assert not s["complete"] and not os.path.exists(tmp_path / "o" / "manifest.json")
    answered = {k: v for k, v in server.hits.items() if "red" not in k}
    down["on"] = False
    s = run("describe", src, tmp_path / "o", **kw)
    assert s["complete"] and s["kept"] == 120
    assert all(server.hits[k] == n for k, n in answered.items())  # nothing resent
  got = {r["id"]: r["descriptor"] for r in records.iter_records(tmp_path / "o")}
  truth = {r["id"]: r["descriptor"] for r in records.iter_records(src)}
  assert {k: descriptors.canonical(v) for k, v in got.items()} == {
      k: descriptors.canonical(v) for k, v in truth.items()}


def test_group_stage_counts_usage_across_workers_and_keeps_invalid_samples(kworld, tmp_path):
  """vqa2caption calls the LLM in one step and writes shards in another (other DoFn instances,
  other workers): the summary still counts every request, re-ask and token, records_in counts
  the VQA records read (3 per image) and groups_in the images, and rejected answers are kept
  for reading."""
  def answer(task, payload):
    return {"statements": [f"{q} {a}" for q, a in payload["qa"]]}

  def fault(key, attempt):  # every 4th image: the model never answers valid JSON
    return ("malformed", None) if zlib.crc32(key.encode()) % 4 == 0 else None

  src = os.path.join(kworld, "arms", "vqa")
  with LoopbackServer(answer, fault) as server:
    s = run("vqa2caption", src, tmp_path / "v", backend="openai", num_shards=3,
            backend_kwargs={"endpoint": server.endpoint, "model": "m", "max_reasks": 2})
    posts = sum(server.hits.values())
  bad = sum(zlib.crc32(k.encode()) % 4 == 0 for k in server.hits)
  assert s["complete"] and s["records_in"] == 360 and s["groups_in"] == 120
  assert s["kept"] == 120 - bad and s["failed"] == {"invalid_output": bad} and bad > 0
  u = s["usage"]
  assert u["requests"] == posts == 120 + 2 * bad and u["reasks"] == 2 * bad
  assert u["prompt_tokens"] == 10 * posts and u["failures"] == bad
  assert s["this_run"]["usage_requests"] == posts and s["this_run"]["records_in"] == 360
  samples = [json.loads(line) for f in sorted(os.listdir(s["invalid_answer_samples"]))
             for line in open(os.path.join(s["invalid_answer_samples"], f))]
  assert min(bad, 20) <= len(samples) <= bad  # at most 20 per worker
  assert all("oops" in x["answer"] and x["errors"] and "vqa2caption" in x["request"]
             for x in samples)
