"""Offline `describe`: a rule-based caption parser over a vocabulary (no model).

Text is normalised (lowercase, punctuation as words), split into sentences, and each sentence is
tried against a registry of sentence forms (`SENTENCE_FORMS`, first match wins): object lists
('there is a red ring and a blue circle'), dense object phrases ('large red ring top left'),
counts ('there are two circles'), relations ('the red ring is not left of the blue circle'),
attribute statements, fact statements and fact lists ('ring : family kell , habitat ocean').
A sentence that fits no form falls back to noun-phrase spotting with relations between adjacent
noun phrases, which is how it degrades on free-form real captions. On the knowledge world every
caption form is covered, so the parse equals the generator's ground-truth descriptor.
"""
import re
from typing import NamedTuple

from mmscale.knowledge import descriptors
from mmscale.knowledge.vocab import GENERIC_NOUN, Vocabulary

ARTICLES = ("a", "an", "the")
FACT_TEMPLATES = (  # (pattern, fact key or None = inferred from the value)
    ("the {S} belongs to family {V}", "family"), ("the {S} is in family {V}", "family"),
    ("family {V} includes the {S}", "family"), ("the {S} lives in the {V}", "habitat"),
    ("the {V} is home to the {S}", "habitat"), ("a {S} is a {V} shape", None),
    ("the {S} is {V}", None), ("the {K} of the {S} is {V}", "{K}"))


class NP(NamedTuple):
  noun: str
  attrs: tuple
  plural: bool

  @property
  def ref(self) -> str:
    """The referring expression as the world writes it ('red diamond')."""
    return " ".join(self.attrs + (self.noun,))


class Out:
  """Descriptor under construction."""

  def __init__(self, vocab: Vocabulary, grounding: list, image: int | None):
    self.vocab, self.grounding, self.image = vocab, grounding, image
    self.objects, self.relations, self.entities = [], [], []

  def obj(self, name: str, attrs, count: int = 1) -> None:
    o = {"name": name, "attributes": list(attrs), "count": count}
    if self.image is not None:
      o["image"] = self.image
    self.objects.append(o)

  def rel(self, s: str, p: str, o: str) -> None:
    self.relations.append({"subject": s, "predicate": p, "object": o})

  def facts(self, name: str, facts: list) -> None:
    etype = self.vocab.entity_type if name in self.vocab.objects else GENERIC_NOUN
    descriptors.merge_entity(self.entities, name, etype, facts)


def normalise(text: str) -> list:
  """Lowercase words with punctuation split off; returns sentences as word lists."""
  words = re.sub(r"([.,:;?!])", r" \1 ", text.lower()).split()
  sentences, cur = [], []
  for w in words:
    if w in (".", "?", "!", ";"):
      if cur:
        sentences.append(cur)
      cur = []
    else:
      cur.append(w)
  return sentences + ([cur] if cur else [])


def _phrase_at(toks: list, i: int, phrases: list) -> str | None:
  for p in phrases:
    n = len(p.split())
    if " ".join(toks[i:i + n]) == p:
      return p
  return None


def read_np(toks: list, i: int, vocab: Vocabulary, articles=()) -> tuple | None:
  """Noun phrase at toks[i]: [article] attribute* noun [post-noun attribute]; -> (NP, next)."""
  if i < len(toks) and toks[i] in articles:
    i += 1
  attrs = []
  while i < len(toks):
    p = _phrase_at(toks, i, vocab.attribute_phrases)
    if p is None or toks[i] in vocab.singular or toks[i] in vocab.plurals:
      break
    attrs.append(p)
    i += len(p.split())
  if i >= len(toks):
    return None
  word = toks[i]
  if word in vocab.plurals:
    noun, is_plural = word, False
  elif word in vocab.singular:
    noun, is_plural = vocab.singular[word], True
  else:
    return None
  i += 1
  p = _phrase_at(toks, i, vocab.attribute_phrases) if i < len(toks) else None
  if p is not None and vocab.kind_of[p] in vocab.post_noun:
    attrs.append(p)
    i += len(p.split())
  return NP(noun, tuple(attrs), is_plural), i


def _resolve(np_: NP, out: Out) -> NP:
  """'the red object' -> the grounded object whose attributes include 'red', when unique."""
  if np_.noun != GENERIC_NOUN:
    return np_
  hits = [g for g in out.grounding if set(np_.attrs) <= set(g["attributes"])]
  return NP(hits[0]["name"], np_.attrs, False) if len(hits) == 1 else np_


def form_header(toks, out) -> bool:
  """'two objects .' heads a dense caption; the objects themselves follow."""
  return len(toks) == 2 and toks[0] in out.vocab.number_value and toks[1] in (
      GENERIC_NOUN, out.vocab.plurals[GENERIC_NOUN])


def form_count(toks, out) -> bool:
  """'there is one red object' / 'there are zero circles'."""
  if toks[:2] not in (["there", "is"], ["there", "are"]) or len(toks) < 4:
    return False
  if toks[2] not in out.vocab.number_value:
    return False
  r = read_np(toks, 3, out.vocab)
  if r is None or r[1] != len(toks):
    return False
  out.obj(r[0].noun, r[0].attrs, out.vocab.number_value[toks[2]])
  return True


def form_list(toks, out) -> bool:
  """'[there is | an image of] a red ring , a blue circle and a green cross'."""
  i = 0
  for prefix in (["there", "is"], ["there", "are"], ["an", "image", "of"]):
    if toks[:len(prefix)] == prefix:
      i = len(prefix)
  found = []
  while True:
    if i >= len(toks) or toks[i] not in ("a", "an"):
      return False
    r = read_np(toks, i, out.vocab, ("a", "an"))
    if r is None:
      return False
    found.append(r[0])
    i = r[1]
    if i == len(toks):
      break
    if toks[i] not in (",", "and"):
      return False
    i += 1
  for np_ in found:
    out.obj(np_.noun, np_.attrs)
  return True


def form_dense_object(toks, out) -> bool:
  """'large red ring top left' (no article, the whole sentence)."""
  r = read_np(toks, 0, out.vocab)
  if r is None or r[1] != len(toks) or not r[0].attrs:
    return False
  out.obj(r[0].noun, r[0].attrs)
  return True


def form_relation(toks, out) -> bool:
  """'[the] S [is] [not] REL [the] O'."""
  r = read_np(toks, 0, out.vocab, ("the",))
  if r is None:
    return False
  subj, i = r
  if i < len(toks) and toks[i] in ("is", "are"):
    i += 1
  neg = ""
  if i < len(toks) and toks[i] == "not":
    neg, i = "not ", i + 1
  pred = _phrase_at(toks, i, out.vocab.relation_phrases) if i < len(toks) else None
  if pred is None:
    return False
  r = read_np(toks, i + len(pred.split()), out.vocab, ("the",))
  if r is None or r[1] != len(toks):
    return False
  out.rel(subj.ref, neg + pred, r[0].ref)
  return True


def form_fact_list(toks, out) -> bool:
  """'ring : family kell , habitat ocean' and 'ring and square : same family'."""
  if ":" not in toks:
    return False
  c = toks.index(":")
  head, body = toks[:c], toks[c + 1:]
  if len(head) == 3 and head[1] == "and" and len(body) == 2 and body[0] == "same":
    out.rel(head[0], f"same {body[1]} as", head[2])
    return True
  if len(head) != 1 or not body:
    return False
  parts, cur = [], []
  for w in body + [","]:
    if w == ",":
      if not cur:
        return False
      parts.append(" ".join(cur))
      cur = []
    else:
      cur.append(w)
  out.facts(head[0], parts)
  return True


def form_both_have(toks, out) -> bool:
  """'the cross and the ring both have weight heavy' -> (cross, same weight as, ring)."""
  if len(toks) < 9 or toks[0] != "the" or toks[2:4] != ["and", "the"] or toks[5:7] != [
      "both", "have"]:
    return False
  out.rel(toks[1], f"same {toks[7]} as", toks[4])
  return True


def _match(pattern: list, toks: list, vocab: Vocabulary) -> dict | None:
  """Matches a template ('the {S} lives in the {V}'): {S} a noun phrase, other slots one word."""
  slots, i = {}, 0
  for p in pattern:
    if p == "{S}":
      r = read_np(toks, i, vocab)
      if r is None:
        return None
      slots["S"], i = r
    elif p.startswith("{"):
      if i >= len(toks):
        return None
      slots[p[1:-1]], i = toks[i], i + 1
    elif i < len(toks) and toks[i] == p:
      i += 1
    else:
      return None
  return slots if i == len(toks) else None


def form_fact(toks, out) -> bool:
  """Fact templates ('the cross lives in the desert', 'the red object is heavy')."""
  for pattern, key in FACT_TEMPLATES:
    m = _match(pattern.split(), toks, out.vocab)
    if m is None:
      continue
    value = m["V"]
    key = m["K"] if key == "{K}" else key or out.vocab.fact_key_of.get(value)
    if key is None or (pattern == "the {S} is {V}" and value not in out.vocab.fact_key_of):
      continue
    np_ = _resolve(m["S"], out)
    if np_.attrs:
      out.obj(np_.noun, np_.attrs)
    out.facts(np_.noun if np_.noun != GENERIC_NOUN else np_.ref, [f"{key} {value}"])
    return True
  return False


def form_attribute(toks, out) -> bool:
  """'the ring is red', 'the red ring is large', 'the ring is at the top left',
  'the red object is a diamond'."""
  r = read_np(toks, 0, out.vocab, ("the",))
  if r is None or r[1] + 1 >= len(toks) or toks[r[1]] != "is":
    return False
  np_, i = r[0], r[1] + 1
  if toks[i:i + 2] == ["at", "the"]:
    i += 2
  p = _phrase_at(toks, i, out.vocab.attribute_phrases)
  if p is not None and i + len(p.split()) == len(toks):
    out.obj(np_.noun, np_.attrs + (p,))
    return True
  if np_.noun == GENERIC_NOUN and toks[i] in ("a", "an"):
    r = read_np(toks, i, out.vocab, ("a", "an"))
    if r is not None and r[1] == len(toks) and not r[0].attrs:
      out.obj(r[0].noun, np_.attrs)
      return True
  return False


def form_fallback(toks, out) -> bool:
  """Free text: every noun phrase is an object; a relation phrase between two adjacent noun
  phrases is a relation."""
  i, last, pending = 0, None, None
  while i < len(toks):
    r = read_np(toks, i, out.vocab, ARTICLES)
    if r is not None:
      np_, i = r
      out.obj(np_.noun, np_.attrs, 2 if np_.plural else 1)
      if pending and last is not None:
        out.rel(last.ref, pending, np_.ref)
      last, pending = np_, None
      continue
    pred = _phrase_at(toks, i, out.vocab.relation_phrases)
    if pred is not None:
      pending, i = pred, i + len(pred.split())
    else:
      i += 1
  return True


SENTENCE_FORMS = (form_header, form_count, form_list, form_fact_list, form_both_have,
                  form_relation, form_fact, form_attribute, form_dense_object, form_fallback)


def parse_into(text: str, out: Out) -> None:
  for sentence in normalise(text):
    for form in SENTENCE_FORMS:
      if form(sentence, out):
        break


def describe(text: str, vocab: Vocabulary, grounding: list | None = None) -> dict:
  """Caption -> descriptor (docs/data_format.md). `grounding`: [{"name", "attributes"}] objects
  known to be in the image, used only to resolve generic references ('the red object')."""
  quoted = re.findall(r'"([^"]+)"', text)
  out = Out(vocab, grounding or [], None)
  parse_into(re.sub(r'"[^"]+"', " ", text), out)
  return {"objects": out.objects, "relations": out.relations, "scene": vocab.scene,
          "text_in_image": quoted, "entities": out.entities}


def describe_segments(texts: list, vocab: Vocabulary, grounding: list | None = None) -> dict:
  """Interleaved documents: [(image index or None, text)] -> one descriptor whose objects carry
  `image` (the image the text follows)."""
  out = Out(vocab, grounding or [], None)
  for image, text in texts:
    out.image = image
    parse_into(text, out)
  return {"objects": out.objects, "relations": out.relations, "scene": vocab.scene,
          "text_in_image": [], "entities": out.entities}
