"""The results table says which evaluators the training mixture teaches, from its record kinds."""

from mmscale import config as config_lib
from mmscale.eval.runner import format_table
from mmscale.eval.taught import taught_evaluators

RESULTS = {"vqa/accuracy/all": 0.8, "vqa/count/all": 10, "caption/cider_d": 1.5,
           "caption/bleu4": 0.3, "text/perplexity": 197823.0, "fewshot/8shot/accuracy/all": 0.05,
           "heldout/perplexity": 1.4}


def _data(world_dir, mixture, sources=None):
  c = config_lib.base_config()
  c.data.world_dir = world_dir
  c.data.mixture = mixture
  if sources:
    c.data.sources = sources
  return c.data


def test_taught_evaluators_follow_the_mixture_kinds(tiny_world, tmp_path):
  assert taught_evaluators(_data(tiny_world, {"enriched": 0.6, "vqa": 0.4})) == {
      "vqa", "heldout_loss", "caption"}
  assert taught_evaluators(_data(tiny_world, {"text": 1.0, "pairs": 1.0, "vqa": 0.0})) == {
      "text", "pairs"}
  assert taught_evaluators(_data(tiny_world, {"interleaved": 1.0})) == {"fewshot"}
  assert taught_evaluators(_data(tiny_world, {"cc": 1.0}, {"cc": {"type": "tfds",
                                                                    "name": "x"}})) == {"caption"}
  assert taught_evaluators(_data(str(tmp_path), {"nowhere": 1.0})) is None


def test_table_puts_untaught_evaluators_under_their_own_heading():
  table = format_table(RESULTS, {"vqa", "caption", "heldout_loss"}).splitlines()
  heading = next(i for i, line in enumerate(table) if line.startswith("not taught"))
  assert table[0] == "trained for: vqa, caption, heldout_loss"
  assert heading > table.index("caption CIDEr-D: 1.500")
  assert table[heading].endswith(": fewshot, text")
  assert table[heading + 1:] == ["few-shot accuracy: 8-shot 0.050", "text perplexity: 197823.000"]
  assert "trained for" not in format_table(RESULTS)  # kinds unknown: one table, no split
