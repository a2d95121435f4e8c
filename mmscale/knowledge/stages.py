"""The engine's stages as pure functions over records, independent of Beam.

A *map stage* turns each input record into backend requests (`requests`) and the answers into
an outcome (`finish`): ("kept", [records]) | ("rejected", reason) | ("failed", reason). A
*group stage* first groups records by a key (pairing block, image) and works per group. Jobs
(jobs.py) run these in Beam; tests and benches can call them directly.
"""
import collections
import dataclasses
import hashlib

from mmscale.knowledge import caption2vqa, descriptors, enrich, filter as filter_lib, inject, pairing, parse
from mmscale.knowledge import tasks, vqa2caption
from mmscale.knowledge.llm.base import LLMError
from mmscale.registry import Registry

KEPT, REJECTED, FAILED = "kept", "rejected", "failed"


@dataclasses.dataclass
class StageContext:
  """What a stage needs: the backend, vocabulary, KB, options and its provenance step."""
  backend: object
  vocab: object
  kb: dict
  with_facts: bool = True
  pair: pairing.PairConfig = dataclasses.field(default_factory=pairing.PairConfig)
  step: dict = dataclasses.field(default_factory=dict)  # {stage, backend, model, prompt_version}


def with_provenance(rec: dict, ctx: StageContext, **changes) -> dict:
  meta = dict(rec.get("meta") or {})
  meta["provenance"] = list(meta.get("provenance", [])) + [ctx.step]
  return {**rec, **changes, "meta": meta}


def texts(rec: dict) -> list:
  """[(index of the image the text follows or None, text)] of a record's text segments."""
  out, image = [], None
  for s in rec["segments"]:
    if "image" in s:
      image = s["image"]
    else:
      out.append((image, s["text"]))
  return out


def grounding(rec: dict) -> list:
  """Objects known from the image: the knowledge world's meta.scenes (first image)."""
  scenes = (rec.get("meta") or {}).get("scenes")
  if not scenes or rec["kind"] == "interleaved":
    return []
  return [{"name": o[0], "attributes": [str(a) for a in o[1:4]]} for o in scenes[0]]


def _images_then(rec: dict, text: str) -> list:
  return [{"image": i} for i in range(len(rec["images"]))] + [{"text": text, "loss": True}]


# -- describe ---------------------------------------------------------------------------------
def describe_requests(rec, ctx):
  if rec["kind"] == "interleaved":
    return [tasks.request("describe", {"caption": t, "grounding": []}) for _, t in texts(rec)]
  if rec["kind"] in ("caption", "text"):
    text = " ".join(t for _, t in texts(rec))
    return [tasks.request("describe", {"caption": text, "grounding": grounding(rec)})]
  return "kind_" + rec["kind"]


def describe_finish(rec, answers, ctx):
  if rec["kind"] != "interleaved":
    return KEPT, [with_provenance(rec, ctx, descriptor=answers[0])]
  merged = {"objects": [], "relations": [], "scene": answers[0]["scene"] if answers else "",
            "text_in_image": [], "entities": []}
  for (image, _), d in zip(texts(rec), answers):
    merged["objects"] += [dict(o, image=image) for o in d["objects"]]
    merged["relations"] += d["relations"]
    merged["text_in_image"] += d["text_in_image"]
    for e in d["entities"]:
      descriptors.merge_entity(merged["entities"], e["name"], e["type"], e["facts"])
  return KEPT, [with_provenance(rec, ctx, descriptor=merged)]


# -- enrich -----------------------------------------------------------------------------------
def enrich_requests(rec, ctx):
  if rec["kind"] not in ("caption", "text"):
    return "kind_" + rec["kind"]
  if not rec.get("descriptor"):
    return "no_descriptor"
  return [tasks.request("enrich", enrich.enrich_input(rec["descriptor"], ctx.kb, ctx.vocab,
                                                      ctx.with_facts))]


def enrich_finish(rec, answers, ctx):
  desc = rec["descriptor"]
  if ctx.with_facts:
    desc = enrich.inject_facts(desc, ctx.kb, ctx.vocab)
  return KEPT, [with_provenance(rec, ctx, segments=_images_then(rec, answers[0]["caption"]),
                                descriptor=desc)]


# -- compare ----------------------------------------------------------------------------------
def _pair_descriptors(rec):
  return (rec.get("meta") or {}).get("pair", {}).get("descriptors")


def compare_requests(rec, ctx):
  descs = _pair_descriptors(rec)
  if rec["kind"] != "pair" or not descs:
    return "not_a_pair_record"
  return [tasks.request("compare", inject.compare_input(descs[0], descs[1], ctx.kb))]


def _shared_objects(phrases: list, vocab) -> list:
  out = []
  for p in phrases:
    r = parse.read_np(p.split(), 0, vocab) if vocab is not None else None
    if r is not None:
      out.append({"name": r[0].noun, "attributes": list(r[0].attrs), "count": 1})
  return out


def compare_finish(rec, answers, ctx):
  comp = answers[0]
  pair = rec["meta"]["pair"]
  desc = {"objects": _shared_objects(comp["shared"], ctx.vocab), "relations": [],
          "scene": pair["descriptors"][0].get("scene", ""), "text_in_image": [], "entities": [],
          "comparison": comp, "similarity": pair["similarity"]}
  text = inject.render_comparison(comp)
  if not text:
    return REJECTED, "empty_comparison"
  return KEPT, [with_provenance(rec, ctx, segments=_images_then(rec, text), descriptor=desc)]


# -- filter -----------------------------------------------------------------------------------
def filter_requests(rec, ctx):
  descs = _pair_descriptors(rec)
  comp = (rec.get("descriptor") or {}).get("comparison")
  if not descs or comp is None:
    return "not_a_compared_pair"
  text = " ".join(t for _, t in texts(rec))
  return [tasks.request("filter", filter_lib.filter_input(descs[0], descs[1], comp, text))]


def filter_finish(rec, answers, ctx):
  verdict = answers[0]
  if not verdict["keep"]:
    return REJECTED, verdict["reason"] or "rejected"
  return KEPT, [with_provenance(rec, ctx)]


# -- caption2vqa ------------------------------------------------------------------------------
def caption2vqa_requests(rec, ctx):
  if not rec.get("descriptor") or not rec["images"]:
    return "no_descriptor_or_image"
  return [tasks.request("caption2vqa", caption2vqa.caption2vqa_input(rec["descriptor"]))]


def caption2vqa_finish(rec, answers, ctx):
  qas = answers[0]["qa"]
  if not qas:
    return REJECTED, "no_questions"
  out = []
  for k, qa in enumerate(qas):
    stmt = vqa2caption.statement(qa["question"], qa["answer"], ctx.vocab)[0]
    out.append(with_provenance(
        {"id": f"{rec['id']}-q{k}", "kind": "vqa", "images": rec["images"][:1],
         "segments": [{"image": 0}, {"text": qa["question"], "loss": False},
                      {"text": qa["answer"], "loss": True}],
         "descriptor": parse.describe(stmt, ctx.vocab),
         "meta": {**{k_: v for k_, v in (rec.get("meta") or {}).items() if k_ != "provenance"},
                  "qtype": qa["qtype"], "answer": qa["answer"], "source_id": rec["id"]}}, ctx))
  return KEPT, out


MapStage = collections.namedtuple("MapStage", "requests finish")
MAP_STAGES = Registry("map stage")
MAP_STAGES.add("describe", MapStage(describe_requests, describe_finish))
MAP_STAGES.add("enrich", MapStage(enrich_requests, enrich_finish))
MAP_STAGES.add("compare", MapStage(compare_requests, compare_finish))
MAP_STAGES.add("filter", MapStage(filter_requests, filter_finish))
MAP_STAGES.add("caption2vqa", MapStage(caption2vqa_requests, caption2vqa_finish))
GROUP_STAGES = ("pair", "vqa2caption")
PROMPT_VERSIONS = {name: t.version for name, t in tasks.TASKS.items()}
PROMPT_VERSIONS["pair"] = "pair-v1"


def run_map_batch(stage: str, recs: list, ctx: StageContext) -> list:
  """Outcomes for a batch of records; all their requests go to the backend as one batch."""
  spec = MAP_STAGES.get(stage)
  plans = [spec.requests(r, ctx) for r in recs]
  flat = [q for p in plans if not isinstance(p, str) for q in p]
  answers = iter(ctx.backend.complete_json_batch(flat))
  out = []
  for rec, plan in zip(recs, plans):
    if isinstance(plan, str):
      out.append((REJECTED, plan))
      continue
    got = [next(answers) for _ in plan]
    err = next((a for a in got if isinstance(a, LLMError)), None)
    out.append((FAILED, err.reason) if err is not None else spec.finish(rec, got, ctx))
  return out


# -- group stages -----------------------------------------------------------------------------
def image_key(rec: dict) -> str:
  """Groups VQA records of one image: the world's scene id, else a hash of the image bytes."""
  meta = rec.get("meta") or {}
  if meta.get("scene_id"):
    return str(meta["scene_id"])
  return hashlib.sha1(rec["images"][0] if rec["images"] else rec["id"].encode()).hexdigest()[:16]


def vqa2caption_group(key: str, recs: list, ctx: StageContext) -> tuple:
  """VQA records of one image -> one caption record (statements in record-id order)."""
  recs = sorted(recs, key=lambda r: r["id"])
  qas = []
  for r in recs:
    t = texts(r)
    if len(t) >= 2:
      qas.append((t[0][1], t[-1][1]))
  if not qas:
    return REJECTED, "no_qa"
  answer = ctx.backend.complete_json_batch(
      [tasks.request("vqa2caption", vqa2caption.vqa2caption_input(qas))])[0]
  if isinstance(answer, LLMError):
    return FAILED, answer.reason
  text = " ".join(answer["statements"])
  meta = {k: v for k, v in (recs[0].get("meta") or {}).items()
          if k not in ("qtype", "qform", "answer", "choices", "provenance")}
  rec = {"id": f"vqa2caption-{key}", "kind": "caption", "images": recs[0]["images"][:1],
         "segments": [{"image": 0}, {"text": text, "loss": True}],
         "descriptor": parse.describe(text, ctx.vocab) if ctx.vocab else None,
         "meta": {**meta, "source_ids": [r["id"] for r in recs]}}
  return KEPT, [with_provenance(rec, ctx)]


def pair_record(a: dict, b: dict, sim: float, block: str, ctx: StageContext) -> dict:
  """Two-image record of a chosen pair; the text is the two source captions until `compare`
  writes the comparative text."""
  text = " ".join(t for _, t in texts(a)) + " " + " ".join(t for _, t in texts(b))
  meta = {"pair": {"ids": [a["id"], b["id"]], "similarity": round(sim, 4), "block": block,
                   "descriptors": [a["descriptor"], b["descriptor"]]},
          "scene_ids": [(x.get("meta") or {}).get("scene_id", x["id"]) for x in (a, b)]}
  rec = {"id": f"pair-{a['id']}-{b['id']}", "kind": "pair", "images": [a["images"][0],
                                                                       b["images"][0]],
         "segments": [{"image": 0}, {"image": 1}, {"text": text.strip(), "loss": True}],
         "descriptor": None, "meta": meta}
  return with_provenance(rec, ctx)
