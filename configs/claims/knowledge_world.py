"""The knowledge-world claims of "Caption First, VQA Second" (arXiv 2604.13054) and MM1
(arXiv 2403.09611, §3.2), each decided by the rule of its kind in mmscale/scaling/claims.py:

  python tools/report.py --results=DENSITY.csv --results=MM1.csv \
      --claims=configs/claims/knowledge_world.py ...

Conditions are arms (the report's default `--by`). The density sweep tags arms 'format' (caption,
vqa, caption_vqa, vqa_as_caption, enriched) or 'density' (enriched_pairs,
enriched_pairs_knowledge); enriched is only in 'format', so the density claims select their arms
by name across all rows instead of filtering by group. The MM1 ablation is group 'mm1_connector'
(one arm; its conditions are the res x image_tokens x connector grid).

Arguments (`configs/claims/knowledge_world.py:formats=vqa+ranked+statement,tokens=4915200`):
  formats: '+'-separated evaluation formats each claim is judged in: `vqa` (generation, exact
           match), `ranked` (the answer set ranked by likelihood) and `statement` (the true
           caption-form statement against its false counterparts); docs/evaluation.md. Every
           claim is repeated per format, its name suffixed with the format when there are several.
  tokens:  judge only the rows of this token budget (0 = all rows), for a sweep over budgets.
  mm1:     include the MM1 connector claim (needs the `mm1_connector` group's rows).
"""

from mmscale.config import parse_arg
from mmscale.errors import ConfigError

FORMATS = ("vqa", "ranked", "statement")
MARGIN = 0.03  # "little": at most 3 points of accuracy, as the claims are stated


def _claims_in(fmt: str, mm1: bool) -> list[dict]:
  """The claims, each judged on the accuracy of evaluation format `fmt`; the MM1 claim if `mm1`."""
  acc = f"{fmt}/accuracy/"
  every = acc + "all"

  def at_most(name, a, b):
    return {"name": name, "kind": "at_most", "metric": every, "a": a, "b": b, "margin": MARGIN}

  def greater(name, a, b, metric):
    return {"name": name, "kind": "greater", "metric": metric, "a": a, "b": b}

  claims = [
      # The paper's claim as stated: adding VQA to captions (arm B) gains little over captions
      # (arm A) at an equal token budget. The next two ask the same of VQA alone (arm D).
      at_most("VQA adds little beyond captions (captions + VQA vs captions)", "caption_vqa",
              "caption"),
      at_most("VQA alone adds little beyond captions", "vqa", "caption"),
      at_most("VQA alone adds little beyond enriched captions", "vqa", "enriched"),
      {"name": "Reconstruction (VQA rewritten as captions) loses little", "kind": "equivalent",
       "metric": every, "a": "vqa_as_caption", "b": "vqa", "margin": MARGIN},
      greater("Density raises knowledge (held-out facts)", "enriched_pairs_knowledge",
              "enriched", acc + "knowledge_heldout"),
      greater("Density raises knowledge (all knowledge questions)", "enriched_pairs_knowledge",
              "enriched", acc + "knowledge"),
      greater("Density raises relations (pairs)", "enriched_pairs", "enriched",
              acc + "relation"),
      greater("Density raises relations (pairs + knowledge)", "enriched_pairs_knowledge",
              "enriched", acc + "relation"),
      greater("Enriched captions beat short captions", "enriched", "caption", every),
      {"name": "Coverage, not task diversity, predicts the score", "kind": "correlation",
       "metric": every, "x": "coverage", "versus": "task_diversity",
       "exclude_groups": ["mm1_connector"]},
  ]
  if mm1:
    claims.append({
        "name": "MM1: resolution and image-token count matter more than connector type",
        "kind": "factor_effects", "metric": every, "group": "mm1_connector",
        "factors": ["res", "image_tokens"], "versus": ["connector"],
        # One seed per grid point: judge the ranges against the seed noise of the same model
        # and budget, measured on the density sweep's replicated arms.
        "noise_from": {"exclude_groups": ["mm1_connector"]}})
  return claims


def get_claims(arg=None):
  args = parse_arg(arg, formats="vqa", tokens=0, mm1=True)
  formats = args.formats.split("+")
  for fmt in formats:
    if fmt not in FORMATS:
      raise ConfigError("config argument 'formats'",
                        f"expected '+'-separated names of {FORMATS}, got '{fmt}'")
  out = []
  for fmt in formats:
    for claim in _claims_in(fmt, args.mm1):
      if len(formats) > 1:
        claim["name"] += f" [{fmt}]"
      if args.tokens:
        claim["where"] = {"tokens": args.tokens}
        if "noise_from" in claim:
          claim["noise_from"]["where"] = {"tokens": args.tokens}
      out.append(claim)
  return out
