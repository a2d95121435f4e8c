"""The knowledge-world claims of "Caption First, VQA Second" (arXiv 2604.13054) and MM1
(arXiv 2403.09611, §3.2), each decided by the rule of its kind in mmscale/scaling/claims.py:

  python tools/report.py --results=DENSITY.csv --results=MM1.csv \
      --claims=configs/claims/knowledge_world.py ...

Conditions are arms (the report's default `--by`). The density sweep tags arms 'format' (caption,
vqa, caption_vqa, vqa_as_caption, enriched) or 'density' (enriched_pairs,
enriched_pairs_knowledge); enriched is only in 'format', so the density claims select their arms
by name across all rows instead of filtering by group. The MM1 ablation is group 'mm1_connector'
(one arm; its conditions are the res x image_tokens x connector grid).
"""

ALL = "vqa/accuracy/all"
MARGIN = 0.03  # "little": at most 3 points of accuracy, as the claims are stated


def _at_most(name, a, b):
  return {"name": name, "kind": "at_most", "metric": ALL, "a": a, "b": b, "margin": MARGIN}


def _greater(name, a, b, metric):
  return {"name": name, "kind": "greater", "metric": metric, "a": a, "b": b}


def get_claims(arg=None):
  del arg
  return [
      # The paper's claim as stated: adding VQA to captions (arm B) gains little over captions
      # (arm A) at an equal token budget. The next two ask the same of VQA alone (arm D).
      _at_most("VQA adds little beyond captions (captions + VQA vs captions)", "caption_vqa",
               "caption"),
      _at_most("VQA alone adds little beyond captions", "vqa", "caption"),
      _at_most("VQA alone adds little beyond enriched captions", "vqa", "enriched"),
      {"name": "Reconstruction (VQA rewritten as captions) loses little", "kind": "equivalent",
       "metric": ALL, "a": "vqa_as_caption", "b": "vqa", "margin": MARGIN},
      _greater("Density raises knowledge (held-out facts)", "enriched_pairs_knowledge",
               "enriched", "vqa/accuracy/knowledge_heldout"),
      _greater("Density raises knowledge (all knowledge questions)", "enriched_pairs_knowledge",
               "enriched", "vqa/accuracy/knowledge"),
      _greater("Density raises relations (pairs)", "enriched_pairs", "enriched",
               "vqa/accuracy/relation"),
      _greater("Density raises relations (pairs + knowledge)", "enriched_pairs_knowledge",
               "enriched", "vqa/accuracy/relation"),
      _greater("Enriched captions beat short captions", "enriched", "caption", ALL),
      {"name": "Coverage, not task diversity, predicts the score", "kind": "correlation",
       "metric": ALL, "x": "coverage", "versus": "task_diversity",
       "exclude_groups": ["mm1_connector"]},
      {"name": "MM1: resolution and image-token count matter more than connector type",
       "kind": "factor_effects", "metric": ALL, "group": "mm1_connector",
       "factors": ["res", "image_tokens"], "versus": ["connector"],
       # One seed per grid point: judge the ranges against the seed noise of the same model and
       # budget, measured on the density sweep's replicated arms.
       "noise_from": {"exclude_groups": ["mm1_connector"]}},
  ]
