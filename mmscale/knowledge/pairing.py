"""Semantic pairing: pairs of images with coarse alignment and fine-grained contrast.

Rules (`pair_ok`): both descriptors share the block key (the multiset of object names: same
category content), cosine similarity of their descriptor embeddings lies in `band` = [lower,
upper], and at least one attribute or relation differs. Embeddings are hashed bags of descriptor
features (object names, name+attribute, relation triples; `DIM` buckets, crc32 so every process
hashes alike), L2-normalised, so cosine = dot product.

Candidate retrieval scales by blocking: items are grouped by block key (a Beam GroupByKey at
scale), each block is sorted by an attribute signature and cut into chunks of at most
`max_block` items, and similarities are one matrix product per chunk: memory and time are
O(N * max_block), never O(N^2). Inside a chunk, edges in band are taken greedily by similarity
with a cap of `max_pairs` pairs per image.
"""
import dataclasses
import zlib

import numpy as np

from mmscale.knowledge.vocab import INVERSE_RELATIONS

DIM = 1024


@dataclasses.dataclass(frozen=True)
class PairConfig:
  lower: float = 0.6
  upper: float = 0.9
  max_pairs: int = 1
  max_block: int = 512
  candidates: int = 8  # best in-band partners considered per image before the greedy cap


def _rel_key(r: dict) -> tuple:
  """Relation with inverse predicates folded ('b right of a' == 'a left of b')."""
  s, p, o = r["subject"], r["predicate"], r["object"]
  neg = p.startswith("not ")
  base = p[4:] if neg else p
  if base in INVERSE_RELATIONS and base not in ("left of", "above"):
    s, o, base = o, s, INVERSE_RELATIONS[base]
  return (s, ("not " if neg else "") + base, o)


def attribute_set(desc: dict) -> set:
  return {(o["name"], a) for o in desc["objects"] for a in o["attributes"]}


def relation_set(desc: dict) -> set:
  return {_rel_key(r) for r in desc["relations"]}


def block_key(desc: dict) -> str:
  """Coarse category: scene + the sorted multiset of object names."""
  names = sorted(n for o in desc["objects"] for n in [o["name"]] * max(1, o.get("count", 1)))
  return desc.get("scene", "") + "|" + ",".join(names)


def features(desc: dict) -> list:
  f = [f"o:{o['name']}" for o in desc["objects"]]
  f += [f"a:{n}:{a}" for n, a in attribute_set(desc)] + [f"w:{a}" for _, a in attribute_set(desc)]
  f += ["r:" + "|".join(r) for r in relation_set(desc)]
  return f


def embed(desc: dict) -> np.ndarray:
  """float32[DIM] L2-normalised hashed bag of features."""
  v = np.zeros(DIM, np.float32)
  for f in features(desc):
    v[zlib.crc32(f.encode()) % DIM] += 1.0
  n = np.linalg.norm(v)
  return v / n if n > 0 else v


def signature(desc: dict) -> str:
  """Sort key inside a block: items with similar attributes land in the same chunk."""
  return ";".join(sorted(f"{n}:{a}" for n, a in attribute_set(desc)))


def contrast(da: dict, db: dict) -> bool:
  return attribute_set(da) != attribute_set(db) or relation_set(da) != relation_set(db)


def pair_ok(da: dict, db: dict, sim: float, cfg: PairConfig) -> bool:
  """The pairing rules, checked independently of how the pair was found."""
  return (block_key(da) == block_key(db) and cfg.lower <= sim <= cfg.upper
          and contrast(da, db))


def _chunk_pairs(idx: list, vecs: np.ndarray, descs: list, cfg: PairConfig) -> list:
  sims = vecs @ vecs.T
  np.fill_diagonal(sims, -1.0)
  ok = (sims >= cfg.lower) & (sims <= cfg.upper)
  k = min(cfg.candidates, len(idx) - 1)
  cand = set()
  for r in range(len(idx)):
    row = np.where(ok[r], sims[r], -np.inf)
    for c in np.argsort(-row)[:k]:
      if np.isfinite(row[c]):
        cand.add((min(r, int(c)), max(r, int(c))))
  edges = sorted(cand, key=lambda e: (-sims[e], e))
  degree = [0] * len(idx)
  out = []
  for r, c in edges:
    if degree[r] < cfg.max_pairs and degree[c] < cfg.max_pairs and contrast(descs[r], descs[c]):
      degree[r] += 1
      degree[c] += 1
      out.append((idx[r], idx[c], float(sims[r, c])))
  return out


def block_pairs(items: list, cfg: PairConfig) -> list:
  """items: [(id, descriptor)] of one block -> [(id_a, id_b, similarity)]."""
  items = sorted(items, key=lambda it: (signature(it[1]), it[0]))
  out = []
  for start in range(0, len(items), cfg.max_block):
    chunk = items[start:start + cfg.max_block]
    if len(chunk) < 2:
      continue
    vecs = np.stack([embed(d) for _, d in chunk])
    out += _chunk_pairs([i for i, _ in chunk], vecs, [d for _, d in chunk], cfg)
  return out


def find_pairs(items: list, cfg: PairConfig) -> list:
  """In-memory blocked retrieval over [(id, descriptor)] (Beam does the grouping at scale)."""
  blocks: dict = {}
  for rid, d in items:
    blocks.setdefault(block_key(d), []).append((rid, d))
  return [p for key in sorted(blocks) for p in block_pairs(blocks[key], cfg)]
