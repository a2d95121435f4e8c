"""Caption metrics: CIDEr-D and BLEU-4, as pycocoevalcap computes them (no download needed).

Both take `candidates: list[str]` and `references: list[list[str]]` (aligned by image) and
tokenise by lowercasing and splitting off punctuation (a stand-in for the PTB tokenizer that the
COCO toolkit runs first: on already-clean text the two agree).

CIDEr-D (Vedantam et al. 2015; pycocoevalcap/cider/cider_scorer.py): per n = 1..4, TF-IDF
vectors of n-gram counts with idf = log(#images) - log(max(1, df)), df = number of images whose
references contain the n-gram; per reference, the candidate's clipped cosine similarity
sum_g min(c_g, r_g) * r_g / (|c| |r|), times a length penalty exp(-(l_c - l_r)^2 / (2 * 6^2)),
where l is the count of *bigrams* (the reference code's quirk, reproduced); averaged over n and
the references, times 10; the corpus score is the mean over images.

BLEU-4 (Papineni et al. 2002; pycocoevalcap/bleu/bleu_scorer.py, option 'closest'): corpus-level
modified n-gram precisions p_n (clipped by the max count in any reference), geometric mean over
n = 1..4 with the toolkit's tiny=1e-15 / small=1e-9 smoothing, times the brevity penalty
exp(1 - r / c) when c < r, where r sums the reference length closest to each candidate (ties
-> the shorter).
"""

from __future__ import annotations

import collections
import math
import re

_TOKEN = re.compile(r"[a-z0-9']+")
SIGMA = 6.0


def tokenize(text: str) -> list[str]:
  return _TOKEN.findall(str(text).lower())


def ngrams(words: list[str], n_max: int = 4) -> collections.Counter:
  return collections.Counter(tuple(words[i:i + n]) for n in range(1, n_max + 1)
                             for i in range(len(words) - n + 1))


def _check(candidates, references):
  if len(candidates) != len(references):
    raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
  if any(not refs for refs in references):
    raise ValueError("every candidate needs at least one reference")


def cider_d(candidates: list[str], references: list[list[str]]) -> tuple[float, list[float]]:
  """(corpus CIDEr-D, per-image scores)."""
  _check(candidates, references)
  cands = [ngrams(tokenize(c)) for c in candidates]
  refs = [[ngrams(tokenize(r)) for r in rs] for rs in references]
  df = collections.Counter(g for rs in refs for g in set().union(*rs))
  log_n = math.log(float(len(refs)))

  def vec(counts):
    v = [{} for _ in range(4)]
    norm = [0.0] * 4
    length = 0
    for g, tf in counts.items():
      n = len(g) - 1
      v[n][g] = tf * (log_n - math.log(max(1.0, df[g])))
      norm[n] += v[n][g] ** 2
      if n == 1:
        length += tf
    return v, [math.sqrt(x) for x in norm], length

  scores = []
  for cand, rs in zip(cands, refs):
    vc, nc, lc = vec(cand)
    total = 0.0
    for r in rs:
      vr, nr, lr = vec(r)
      penalty = math.exp(-((lc - lr) ** 2) / (2 * SIGMA ** 2))
      for n in range(4):
        val = sum(min(x, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g, x in vc[n].items())
        if nc[n] and nr[n]:
          val /= nc[n] * nr[n]
        total += val * penalty
    scores.append(total / 4.0 / len(rs) * 10.0)
  return (sum(scores) / len(scores) if scores else 0.0), scores


def bleu(candidates: list[str], references: list[list[str]], n_max: int = 4) -> float:
  """Corpus BLEU-n_max (BLEU-4 by default)."""
  _check(candidates, references)
  tiny, small = 1e-15, 1e-9
  guess, correct = [0] * n_max, [0] * n_max
  test_len = ref_len = 0
  for cand, rs in zip(candidates, references):
    words = tokenize(cand)
    ref_words = [tokenize(r) for r in rs]
    test_len += len(words)
    ref_len += min((abs(len(r) - len(words)), len(r)) for r in ref_words)[1]
    max_ref = collections.Counter()
    for r in ref_words:
      for g, c in ngrams(r, n_max).items():
        max_ref[g] = max(max_ref[g], c)
    for g, c in ngrams(words, n_max).items():
      correct[len(g) - 1] += min(c, max_ref[g])
    for n in range(1, n_max + 1):
      guess[n - 1] += max(len(words) - n + 1, 0)
  score = 1.0
  for n in range(n_max):
    score *= (correct[n] + tiny) / (guess[n] + small)
  score **= 1.0 / n_max
  ratio = (test_len + tiny) / (ref_len + small)
  if ratio < 1.0:
    score *= math.exp(1.0 - 1.0 / ratio)
  return score
