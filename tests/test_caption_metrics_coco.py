"""CIDEr-D and BLEU-4 equal pycocoevalcap's numbers on a small fixed set.

pycocoevalcap's scorers are given the text already tokenised (space-joined tokens from
`caption_metrics.tokenize`), as its PTB tokenizer step (which needs Java) would hand it; the
scorers themselves are pure Python.
"""

import pytest

from mmscale.eval import caption_metrics

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402

CANDIDATES = [
    "a red circle left of a blue square",
    "two green triangles",
    "the yellow star is above the small red circle",
    "a large blue square",
    "three circles, one of them purple",
    "an orange ring",
]
REFERENCES = [
    ["a red circle to the left of a blue square", "red circle and blue square",
     "a blue square right of a red circle"],
    ["two green triangles", "a pair of green triangles"],
    ["a yellow star above a small red circle", "the star is yellow and sits above a red circle",
     "small red circle below a yellow star", "yellow star, red circle"],
    ["a big blue square", "one large blue square in the middle"],
    ["three circles, one purple and two grey", "a purple circle next to two grey circles"],
    ["an orange ring on the right", "a ring coloured orange", "orange ring"],
]


def _coco_inputs():
  def tok(text):
    return " ".join(caption_metrics.tokenize(text))
  gts = {i: [tok(r) for r in refs] for i, refs in enumerate(REFERENCES)}
  res = {i: [tok(c)] for i, c in enumerate(CANDIDATES)}
  return gts, res


def test_cider_d_equals_pycocoevalcap():
  corpus, per_image = caption_metrics.cider_d(CANDIDATES, REFERENCES)
  coco_corpus, coco_per_image = Cider().compute_score(*_coco_inputs())
  assert corpus == pytest.approx(coco_corpus, rel=1e-9)
  assert per_image == pytest.approx(list(coco_per_image), rel=1e-9)
  assert 0.5 < corpus < 10  # a real spread of scores, not a degenerate set


def test_bleu4_equals_pycocoevalcap():
  coco_bleu, _ = Bleu(4).compute_score(*_coco_inputs(), verbose=0)
  for n in range(1, 5):
    assert caption_metrics.bleu(CANDIDATES, REFERENCES, n_max=n) == pytest.approx(
        coco_bleu[n - 1], rel=1e-9)
