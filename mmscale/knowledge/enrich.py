"""Structured caption enrichment: descriptor (+ knowledge-base facts) -> one dense caption that
states every object, attribute, count and relation, and optionally the injected facts.

Offline the caption is rendered from templates in the world's compact dense style
('two objects . large blue ring top center . red diamond below blue ring . ring : family kell .'),
which the offline parser reads back exactly (describe(enrich(d)) == d), so enrichment provably
adds nothing untrue. Online an LLM rewrites the same content fluently (task `enrich`).
"""
from mmscale.knowledge import schema as js
from mmscale.knowledge.vocab import GENERIC_NOUN, Vocabulary

ENRICH_PROMPT_VERSION = "enrich-v1"
ENRICH_INSTRUCTIONS = (
    "Rewrite the structured descriptor of an image as one dense, fluent caption. State every "
    "object with all of its attributes and its count, every relation, and every fact listed under "
    "'facts'. Do not add anything that is not in the input. Answer with JSON {\"caption\": str}.")
ENRICH_SCHEMA = js.obj({"caption": {"type": "string"}})


def _number(n: int, vocab: Vocabulary) -> str:
  return vocab.numbers[n] if 0 <= n < len(vocab.numbers) else str(n)


def object_phrase(o: dict, vocab: Vocabulary) -> str:
  """'large blue ring top center': attributes in kind order, post-noun kinds after the noun."""
  attrs = sorted(o["attributes"], key=lambda a: vocab.kind_order.get(vocab.kind_of.get(a), -1))
  pre = [a for a in attrs if vocab.kind_of.get(a) not in vocab.post_noun]
  post = [a for a in attrs if vocab.kind_of.get(a) in vocab.post_noun]
  return " ".join(pre + [o["name"]] + post)


def _object_sentence(o: dict, vocab: Vocabulary) -> str:
  n = o.get("count", 1)
  if n == 1 and o["attributes"] and o["name"] != GENERIC_NOUN:
    return object_phrase(o, vocab) + " ."
  noun = o["name"] if n == 1 else vocab.plurals.get(o["name"], o["name"] + "s")
  words = " ".join(o["attributes"] + [noun])
  return f"there {'is' if n == 1 else 'are'} {_number(n, vocab)} {words} ."


def shared_facts(names: list, kb: dict) -> list:
  """(a, key, b) for each pair of distinct names whose KB facts share 'key value'."""
  out = []
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      fb = set(kb.get(b, {}).get("facts", []))
      out += [(a, f.split()[0], b) for f in kb.get(a, {}).get("facts", []) if f in fb]
  return out


def inject_facts(desc: dict, kb: dict, vocab: Vocabulary) -> dict:
  """The descriptor plus KB facts of the object names it mentions (entities) and the facts they
  share ('same family as' relations); names in vocabulary order, as the world writes them."""
  order = {n: i for i, n in enumerate(vocab.objects)}
  names = sorted({o["name"] for o in desc["objects"] if o["name"] in kb},
                 key=lambda n: (order.get(n, len(order)), n))
  entities = [dict(e, facts=list(e["facts"])) for e in desc.get("entities", [])]
  known = {e["name"] for e in entities}
  entities += [dict(kb[n], facts=list(kb[n]["facts"])) for n in names if n not in known]
  relations = list(desc["relations"])
  for a, key, b in shared_facts(names, kb):
    rel = {"subject": a, "predicate": f"same {key} as", "object": b}
    if rel not in relations:
      relations.append(rel)
  return {**desc, "entities": entities, "relations": relations}


def render(desc: dict, vocab: Vocabulary) -> str:
  """Dense caption of everything in `desc` (template; inverse of the offline parser)."""
  parts = []
  concrete = [o for o in desc["objects"] if o["name"] != GENERIC_NOUN]
  if concrete:
    total = sum(o.get("count", 1) for o in concrete)
    parts.append(f"{_number(total, vocab)} {'object' if total == 1 else 'objects'} .")
  parts += [_object_sentence(o, vocab) for o in desc["objects"]]
  for r in desc["relations"]:
    p = r["predicate"]
    if p.startswith("same ") and p.endswith(" as"):
      parts.append(f"{r['subject']} and {r['object']} : same {p[5:-3]} .")
    else:
      parts.append(f"{r['subject']} {p} {r['object']} .")
  for e in desc.get("entities", []):
    if e["facts"]:
      parts.append(f"{e['name']} : " + " , ".join(e["facts"]) + " .")
  parts += [f'the text "{t}" is visible .' for t in desc.get("text_in_image", [])]
  return " ".join(parts)


def enrich_input(desc: dict, kb: dict, vocab: Vocabulary, with_facts: bool) -> dict:
  """Task input: the descriptor with the KB facts already merged in when `with_facts`, so the
  LLM and the template see the same content."""
  return {"descriptor": inject_facts(desc, kb, vocab) if with_facts else desc}


def offline_enrich(payload: dict, ctx) -> dict:
  return {"caption": render(payload["descriptor"], ctx.vocab)}
