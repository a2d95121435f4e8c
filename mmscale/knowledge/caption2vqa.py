"""Caption -> VQA (stage `caption2vqa`): a descriptor -> templated question-answer pairs, so the
reverse experiment (VQA made from captions) exists. Question forms follow the world's templates
(attribute, count, relation, knowledge), and every QA is read back by vqa2caption + the offline
parser into the descriptor content it came from.
"""
import collections

from mmscale.knowledge import schema as js
from mmscale.knowledge.pairing import relation_set
from mmscale.knowledge.vocab import GENERIC_NOUN, INVERSE_RELATIONS, Vocabulary

CAPTION2VQA_PROMPT_VERSION = "caption2vqa-v1"
CAPTION2VQA_INSTRUCTIONS = (
    "Write short question-answer pairs about an image from its structured descriptor: one per "
    "attribute, count, relation and fact, each answerable from the descriptor alone, with "
    "one-word or short answers. Answer with JSON {\"qa\": [{question, answer, qtype}]}, qtype in "
    "attribute, count, relation, knowledge.")
QA_SCHEMA = js.obj({"question": {"type": "string"}, "answer": {"type": "string"},
                    "qtype": {"type": "string", "enum": ["attribute", "count", "relation",
                                                         "knowledge"]}})
CAPTION2VQA_SCHEMA = js.obj({"qa": {"type": "array", "items": QA_SCHEMA}})
KNOWLEDGE_QUESTIONS = {"family": "what family is the {x} ?", "habitat": "where does the {x} live ?",
                       "weight": "how heavy is the {x} ?"}
ATTRIBUTE_QUESTIONS = {"colour": "what colour is the {x} ?", "position": "where is the {x} ?"}


def _qa(question: str, answer: str, qtype: str) -> dict:
  return {"question": question, "answer": answer, "qtype": qtype}


def questions(desc: dict, vocab: Vocabulary) -> list:
  """Every templated QA the descriptor supports (see module docstring)."""
  out = []
  names = collections.Counter(o["name"] for o in desc["objects"])
  for o in desc["objects"]:
    if o["name"] == GENERIC_NOUN or o.get("count", 1) != 1 or names[o["name"]] != 1:
      continue
    for a in o["attributes"]:
      kind = vocab.kind_of.get(a)
      if kind is None:
        continue
      template = ATTRIBUTE_QUESTIONS.get(kind, "what " + kind + " is the {x} ?")
      out.append(_qa(template.format(x=o["name"]), a, "attribute"))
  for name, n in sorted(names.items()):
    if name != GENERIC_NOUN:
      total = sum(o.get("count", 1) for o in desc["objects"] if o["name"] == name)
      number = vocab.numbers[total] if total < len(vocab.numbers) else str(total)
      out.append(_qa(f"how many {vocab.plurals.get(name, name + 's')} are there ?", number,
                     "count"))
  for s, p, o in sorted(relation_set(desc)):
    if p in INVERSE_RELATIONS:
      out.append(_qa(f"is the {s} {p} the {o} ?", "yes", "relation"))
      out.append(_qa(f"is the {o} {p} the {s} ?", "no", "relation"))
  for e in desc.get("entities", []):
    for fact in e["facts"]:
      key, _, value = fact.partition(" ")
      template = KNOWLEDGE_QUESTIONS.get(key, "what is the " + key + " of the {x} ?")
      out.append(_qa(template.format(x=e["name"]), value, "knowledge"))
  return out


def caption2vqa_input(desc: dict) -> dict:
  return {"descriptor": desc}


def offline_caption2vqa(payload: dict, ctx) -> dict:
  return {"qa": questions(payload["descriptor"], ctx.vocab)}
