"""CIDEr-D, BLEU-4, VQA normalisation and soft accuracy against values derived by hand.

The reference values below follow the published formulas (module docstring of
mmscale/eval/caption_metrics.py: Papineni et al. 2002 and Vedantam et al. 2015 as implemented
in pycocoevalcap's bleu_scorer.py / cider_scorer.py); each derivation is spelled out so it can
be checked on paper.
"""

import math

import pytest

from mmscale.eval import caption_metrics
from mmscale.eval.answers import normalize_answer, soft_accuracy

CANDS = ["the cat sat on the mat", "a dog runs"]
REFS = [["the cat sat on a mat"], ["a dog runs fast", "the dog runs"]]


def test_bleu4_by_hand():
  # Clipped matches / candidate n-grams, summed over both images:
  #  1-grams: 'the' x2 clipped to 1, cat, sat, on, mat -> 5/6; a, dog, runs -> 3/3   => 8/9
  #  2-grams: the cat, cat sat, sat on (not on the, the mat) -> 3/5; a dog, dog runs -> 2/2 => 5/7
  #  3-grams: the cat sat, cat sat on -> 2/4; a dog runs -> 1/1                       => 3/5
  #  4-grams: the cat sat on -> 1/3; none in a 3-word candidate                        => 1/3
  # Lengths: candidates 6 + 3; closest references 6 and 3 (not 4) -> no brevity penalty.
  expected = (8 / 9 * 5 / 7 * 3 / 5 * 1 / 3) ** 0.25  # = (8/63)^(1/4) = 0.59695...
  assert caption_metrics.bleu(CANDS, REFS) == pytest.approx(expected, rel=1e-6)
  assert expected == pytest.approx(0.596949, abs=1e-6)


def test_bleu_brevity_penalty_by_hand():
  # 'the cat' vs a 6-word reference: p1 = p2 = 1; BP = exp(1 - 6/2) = exp(-2).
  assert caption_metrics.bleu(["the cat"], [["the cat sat on the mat"]], n_max=2) == \
      pytest.approx(math.exp(-2), rel=1e-6)


def test_cider_d_by_hand():
  # Three images, one reference each; N = 3 so idf(g) = log 3 - log df(g):
  #   df: red 2, square 2, circle 1, blue 1, every bigram 1, unseen n-grams 0 (-> max(1, 0) = 1)
  a, b = math.log(1.5), math.log(3.0)  # idf of a df-2 and a df-1 (or unseen) n-gram
  # A: 'red square' vs 'red circle': unigram cosine of (red a, square a) and (red a, circle b)
  #    with clipped dot a*a; bigrams disjoint; equal bigram counts -> no length penalty.
  score_a = 10 / 4 * (a * a / (math.sqrt(2) * a * math.sqrt(a * a + b * b)))
  # B: identical to its reference: unigram and bigram cosines 1, no 3-/4-grams.
  score_b = 10 / 4 * 2
  # C: 'a blue square' vs 'blue square': unigrams (a b, blue b, square a) . (blue b, square a),
  #    bigrams (a blue b, blue square b) . (blue square b), bigram counts 2 vs 1 -> exp(-1/72).
  uni = (a * a + b * b) / (math.sqrt(2 * b * b + a * a) * math.sqrt(a * a + b * b))
  score_c = 10 / 4 * math.exp(-1 / 72) * (uni + 1 / math.sqrt(2))
  corpus, per_image = caption_metrics.cider_d(
      ["red square", "red square", "a blue square"],
      [["red circle"], ["red square"], ["blue square"]])
  assert per_image == pytest.approx([score_a, score_b, score_c], rel=1e-9)
  assert corpus == pytest.approx((score_a + score_b + score_c) / 3, rel=1e-9)
  assert per_image[1] == pytest.approx(5.0)


def test_cider_d_two_images_exact():
  # Two images, all n-grams df 1 -> equal idf log 2, which cancels in the cosines:
  # 'red circle' == its reference -> 10 * (1 + 1) / 4 = 5; 'blue circle' vs 'blue square'
  # shares one of two unigrams -> cosine 1/2 -> 10 * 0.5 / 4 = 1.25.
  corpus, per_image = caption_metrics.cider_d(["red circle", "blue circle"],
                                              [["red circle"], ["blue square"]])
  assert per_image == pytest.approx([5.0, 1.25])
  assert corpus == pytest.approx(3.125)


def test_metric_input_errors():
  with pytest.raises(ValueError, match="2 candidates but 1"):
    caption_metrics.bleu(["a", "b"], [["a"]])
  with pytest.raises(ValueError, match="at least one reference"):
    caption_metrics.cider_d(["a"], [[]])


@pytest.mark.parametrize("raw,norm", [
    ("Two dogs.", "2 dogs"), ("The cat", "cat"), ("dont know", "don't know"), ("yes!", "yes"),
    ("  A   Red   circle ", "red circle"), ("none", "0"), ("left-of", "left of"),
])
def test_vqa_normalisation(raw, norm):
  assert normalize_answer(raw) == norm


def test_soft_accuracy():
  answers = ["2"] * 2 + ["3"] * 8
  # prediction '2': the 2 subsets without a '2' hold one (1/3), the 8 others hold two (2/3)
  assert soft_accuracy("2", answers) == pytest.approx((2 / 3 + 8 * 2 / 3) / 10)
  assert soft_accuracy("3", answers) == 1.0
  assert soft_accuracy("4", answers) == 0.0
  assert soft_accuracy("red", ["red"]) == 1.0 and soft_accuracy("blue", ["red"]) == 0.0


def test_vqa_subgroups_split_knowledge_by_taught_and_grounding():
  from mmscale.eval.vqa import subgroups, summarize
  metas = [{"qtype": "knowledge", "qform": "grounded_family", "taught": True},
           {"qtype": "knowledge", "qform": "ungrounded_habitat", "taught": False},
           {"qtype": "relation", "qform": "yesno"}]
  extra = [subgroups(m) for m in metas]
  assert extra == [["knowledge_taught", "knowledge_grounded"],
                   ["knowledge_heldout", "knowledge_ungrounded"], []]
  out = summarize(["knowledge", "knowledge", "relation"], [["zorb"], ["ocean"], ["yes"]],
                  ["zorb", "forest", "yes"], "vqa", extra)
  assert out["vqa/accuracy/knowledge_taught"] == 1.0
  assert out["vqa/accuracy/knowledge_heldout"] == 0.0
  assert out["vqa/count/knowledge_grounded"] == 1
  assert out["vqa/accuracy/knowledge"] == 0.5
  assert out["vqa/count/all"] == 3 and abs(out["vqa/accuracy/all"] - 2 / 3) < 1e-9


def test_form_majority_baseline_guesses_each_templates_usual_answer():
  from mmscale.eval.vqa import form_majority_hits, summarize
  # Two templates of one type with disjoint answer sets: one global guess gets 2/6, a guess per
  # template gets 4/6 (what a model that learned the format but not the facts can reach).
  qtypes = ["knowledge"] * 6
  forms = ["family", "family", "family", "weight", "weight", "weight"]
  answers = [["zorb"], ["zorb"], ["plim"], ["heavy"], ["heavy"], ["light"]]
  assert form_majority_hits(forms, [a[0] for a in answers]) == [True, True, False] * 2
  out = summarize(qtypes, answers, ["zorb"] * 6, "vqa", None, forms)
  assert abs(out["vqa/majority/knowledge"] - 2 / 6) < 1e-9
  assert abs(out["vqa/form_majority/knowledge"] - 4 / 6) < 1e-9
  assert abs(out["vqa/form_majority/all"] - 4 / 6) < 1e-9
  assert "vqa/form_majority/all" not in summarize(qtypes, answers, ["zorb"] * 6, "vqa")
