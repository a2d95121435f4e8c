"""Evaluation settings: `config.eval.<name>` with a default when the field is absent.

The evaluation suite reads its newer fields through `setting` so that it works with configs that
predate them (mmscale/config.py:base_config lists the schema). Every field the suite reads and
its default is in `DEFAULTS`; docs/evaluation.md explains each.
"""

from __future__ import annotations

DEFAULTS = {
    "batch_size": 64,            # rows per evaluation batch (rounded to a multiple of data x fsdp)
    "max_examples": 0,           # questions / captions / pairs per evaluator (0 = all)
    "max_decode_len": 4,         # generated tokens per short answer
    "loss_batches": 4,           # batches for held-out loss (0 = all)
    "evals": (),                 # evaluators during training and in the CLI (empty = DEFAULT_EVALS)
    "every": {},                 # evaluator -> steps between runs during training (else eval_every)
    "temperature": 0.0,          # 0 = greedy; > 0 samples
    "top_p": 1.0,                # nucleus sampling mass (with temperature > 0)
    "seed": 0,                   # sampling and few-shot support selection
    "caption_max_len": 24,       # generated tokens per caption
    "fewshot_shots": (0, 4, 8),  # in-context example counts
    "fewshot_max_len": 0,        # few-shot prompt limit in tokens (0 = none); shots drop to fit
    "fewshot_queries": 512,      # query questions per shot count (0 = as many as max_examples)
    "pairs_records": 1024,       # pair records the multi-image evaluator reads (0 = max_examples)
    "text_docs": 64,             # held-out text documents for text perplexity
    "vqa_json": "",              # local VQA JSON file for the `vqa_file` evaluator
    "caption_json": "",          # local COCO-style caption JSON for the `caption_file` evaluator
    "image_root": "",            # images of the local files (default: the JSON file's directory)
    "tccd_alpha": 0.0,           # text-centroid contrastive decoding (0 = off; contrastive.py)
    "tccd_beta": 0.1,            # TCCD plausibility cut-off: keep p >= beta * max p
    "tccd_centroids": "",        # centroids.npz of tools/probe.py ("" = W/analysis/centroids.npz)
    "tccd_layers": (),           # decoder layers erased in the TCCD reference (empty = the set's)
}


def setting(config, name: str):
  """`config.eval.<name>` if the config has it, else `DEFAULTS[name]`."""
  section = config.get("eval") if hasattr(config, "get") else None
  value = section.get(name) if section is not None and hasattr(section, "get") else None
  return DEFAULTS[name] if value is None else value


def limit(config, items: list) -> list:
  """The first `eval.max_examples` items (all when 0)."""
  n = int(setting(config, "max_examples"))
  return items[:n] if n else items
