"""VQA answer normalisation and VQAv2 soft accuracy.

Normalisation follows the official VQA evaluation script (vqaEval.py, Antol et al. 2015 /
Goyal et al. 2017): lowercase; punctuation removed (or replaced by a space where it separates
words; a comma between digits kept out); periods removed unless inside a number; number words
-> digits; articles (a, an, the) dropped; common contractions restored ("dont" -> "don't").
"""

from __future__ import annotations

import itertools
import re

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id": "I'd", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itll": "it'll", "its": "it's", "lets": "let's",
    "mightnt": "mightn't", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "shant": "shan't", "shed": "she'd", "shes": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "thats": "that's", "thered": "there'd",
    "theres": "there's", "theyd": "they'd", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "wasnt": "wasn't", "wed": "we'd", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've",
    "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've",
    "wouldnt": "wouldn't", "yall": "y'all", "youd": "you'd", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
           "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _punctuation(text: str) -> str:
  out = text
  for p in PUNCTUATION:
    if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
      out = out.replace(p, "")
    else:
      out = out.replace(p, " ")
  return _PERIOD_STRIP.sub("", out)


def _digits_articles_contractions(text: str) -> str:
  words = []
  for word in text.lower().split():
    word = NUMBERS.get(word, word)
    if word not in ARTICLES:
      words.append(CONTRACTIONS.get(word, word))
  return " ".join(words)


def normalize_answer(text: str) -> str:
  """An answer in VQA canonical form, e.g. 'Two dogs.' -> '2 dogs', 'The cat' -> 'cat'."""
  text = " ".join(str(text).replace("\n", " ").replace("\t", " ").strip().split())
  return _digits_articles_contractions(_punctuation(text.lower()))


def soft_accuracy(prediction: str, answers: list[str]) -> float:
  """VQAv2 accuracy of one (normalised) prediction against the (normalised) human answers.

  min(#humans in a subset that gave the prediction / 3, 1), averaged over the leave-one-out
  subsets of the answers (the 10-choose-9 subsets for VQAv2's ten answers). A single reference
  answer counts as ten identical ones (= exact match), so datasets with one answer (the
  knowledge world) score the same as exact match.
  """
  if not answers:
    return 0.0
  if len(answers) == 1:
    answers = answers * 10
  scores = []
  for held_out in range(len(answers)):
    rest = itertools.chain(answers[:held_out], answers[held_out + 1:])
    scores.append(min(sum(a == prediction for a in rest) / 3.0, 1.0))
  return sum(scores) / len(scores)
