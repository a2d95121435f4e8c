"""VQA -> caption reconstruction (stage `vqa2caption`): question + answer -> a declarative
statement with the same content, so VQA data becomes caption data (the `vqa_as_caption` arm).

Offline the statement comes from a registry of question forms (`QUESTION_FORMS`, first match
wins), the world's templates plus generic ones; on the knowledge world the statements equal the
generator's `vqa_as_caption` text exactly. A question that fits no form becomes
'<question without ?> : <answer> .' and is counted as a fallback; the LLM backend rewrites
free-form VQA fluently instead.
"""
import re

from mmscale.knowledge import schema as js
from mmscale.knowledge.vocab import Vocabulary

VQA2CAPTION_PROMPT_VERSION = "vqa2caption-v1"
VQA2CAPTION_INSTRUCTIONS = (
    "Rewrite each question-answer pair about an image as one declarative sentence that states "
    "the same information (for a yes/no question, state the fact or its negation). Answer with "
    "JSON {\"statements\": [str]}, one statement per pair, in order.")
VQA2CAPTION_SCHEMA = js.obj({"statements": js.string_array()})


def _count(m, a, vocab):
  noun = m["x"]
  if a == "one" or a == "1":
    return f"there is one {vocab.singular.get(noun, noun.removesuffix('s'))} ."
  return f"there are {a} {noun} ."


def _yesno(m, a, vocab):
  neg = "" if a == "yes" else "not "
  return f"the {m['s']} is {neg}{m['p']} the {m['o']} ."


QUESTION_FORMS = (  # (regex over the normalised question, statement builder)
    (r"what colou?r is the (?P<x>.+) \?", lambda m, a, v: f"the {m['x']} is {a} ."),
    (r"what shape is the (?P<x>.+) \?", lambda m, a, v: f"the {m['x']} is a {a} ."),
    (r"what family is the (?P<x>.+) \?", lambda m, a, v: f"the {m['x']} belongs to family {a} ."),
    (r"where does the (?P<x>.+) live \?", lambda m, a, v: f"the {m['x']} lives in the {a} ."),
    (r"how heavy is the (?P<x>.+) \?", lambda m, a, v: f"the {m['x']} is {a} ."),
    (r"where is the (?P<x>.+) \?", lambda m, a, v: f"the {m['x']} is at the {a} ."),
    (r"what (?P<k>\w+) is the (?P<x>.+) \?", lambda m, a, v: f"the {m['x']} is {a} ."),
    (r"what is the (?P<k>\w+) of the (?P<x>.+) \?",
     lambda m, a, v: f"the {m['k']} of the {m['x']} is {a} ."),
    (r"how many (?P<x>.+) are there \?", _count),
    (r"is the (?P<s>.+?) (?P<p>left of|right of|above|below) the (?P<o>.+) \?", _yesno),
)
_COMPILED = [(re.compile(p + "$"), f) for p, f in QUESTION_FORMS]


def _normalise(text: str) -> str:
  return " ".join(re.sub(r"([.,:;?!])", r" \1 ", text.lower()).split())


def statement(question: str, answer: str, vocab: Vocabulary) -> tuple:
  """-> (statement, matched form index or -1 for the fallback)."""
  q, a = _normalise(question), _normalise(answer).rstrip(" .")
  for k, (rx, build) in enumerate(_COMPILED):
    m = rx.match(q)
    if m:
      return build(m.groupdict(), a, vocab), k
  return f"{q.rstrip(' ?')} : {a} .", -1


def vqa2caption_input(qas: list) -> dict:
  return {"qa": [{"question": q, "answer": a} for q, a in qas]}


def offline_vqa2caption(payload: dict, ctx) -> dict:
  return {"statements": [statement(x["question"], x["answer"], ctx.vocab)[0]
                         for x in payload["qa"]]}
