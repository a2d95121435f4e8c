"""Where evaluation records come from: a world's held-out splits, and local files in common
formats (record dicts of docs/contracts.md §1).

- World splits: `<data.world_dir>/eval/<split>` record directories, in file order.
- VQA JSON: a list (or {"questions": [...]}) of {"question": str, "image": path,
  "answers": [str, ...] | "answer": str, optional "question_type" / "qtype", "id"}; answers may
  also be VQAv2-style dicts {"answer": str}.
- COCO captions: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}.
- Multiple choice (MMBench / SEED / POPE style): a list (or {"questions": [...]}) of
  {"question": str, "image": path, "choices": [str, ...] | {"A": str, "B": str, ...},
  "answer": a choice's text, its key ("B") or its index (int), optional "question_type" /
  "category", "id", "statements": [str, ...] (one caption-form statement per choice)}.
Image paths are relative to `image_root` (default: the JSON file's directory). Every problem
raises `DataError` naming the file, the entry and the field.
"""

from __future__ import annotations

import collections
import json
import os

from mmscale.data import records
from mmscale.errors import ConfigError, DataError


def eval_dir(config, split: str = "vqa") -> str:
  return os.path.join(config.data.world_dir, "eval", split)


def read_records(directory: str, limit: int = 0) -> list[dict]:
  """Records of a record directory in file order (the first `limit` if > 0)."""
  out = []
  for rec in records.iter_records(directory):
    out.append(rec)
    if limit and len(out) >= limit:
      break
  return out


def load_eval_records(config, split: str = "vqa") -> list[dict]:
  """All records of `world_dir/eval/<split>` (up to `eval.max_examples` if > 0), in file order."""
  return read_records(eval_dir(config, split), int(config.eval.max_examples))


def _load_json(path: str):
  if not os.path.isfile(path):
    raise DataError(f"{path}: file not found")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: not valid JSON ({e})") from e


def _field(entry, key: str, path: str, where: str, kind=str):
  if not isinstance(entry, dict) or key not in entry:
    raise DataError(f"{path}: {where} has no field '{key}'")
  value = entry[key]
  if not isinstance(value, kind):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    expected = " or ".join(k.__name__ for k in kinds)
    raise DataError(f"{path}: {where} field '{key}' must be {expected}, "
                    f"got {type(value).__name__}")
  return value


def _image_bytes(root: str, rel: str, path: str, where: str) -> bytes:
  full = rel if os.path.isabs(rel) else os.path.join(root, rel)
  if not os.path.isfile(full):
    raise DataError(f"{path}: {where} image '{rel}' not found (looked for {full})")
  with open(full, "rb") as f:
    return f.read()


def _question_entries(path: str, image_root: str, limit: int) -> tuple[str, list]:
  """(image root, the first `limit` entries) of a questions file: a list, or {"questions": [...]};
  the image root defaults to the file's directory."""
  data = _load_json(path)
  if isinstance(data, dict):
    data = _field(data, "questions", path, "top level", list)
  if not isinstance(data, list):
    raise DataError(f"{path}: expected a list of questions, got {type(data).__name__}")
  return image_root or os.path.dirname(os.path.abspath(path)), data[:limit] if limit else data


def load_vqa_json(path: str, image_root: str = "", limit: int = 0) -> list[dict]:
  """VQA records: [image, question (no loss), first answer (loss)]; meta {qtype, answer(s)}."""
  root, entries = _question_entries(path, image_root, limit)
  out = []
  for i, entry in enumerate(entries):
    where = f"entry {i}"
    question = _field(entry, "question", path, where)
    if "answers" in entry:
      answers = _field(entry, "answers", path, where, list)
      answers = [a["answer"] if isinstance(a, dict) and "answer" in a else a for a in answers]
      if not answers or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{path}: {where} field 'answers' must be a non-empty list of strings")
    else:
      answers = [_field(entry, "answer", path, where)]
    image = _image_bytes(root, _field(entry, "image", path, where), path, where)
    qtype = str(entry.get("question_type") or entry.get("qtype") or "all")
    out.append({"id": str(entry.get("id", i)), "kind": "vqa", "images": [image],
                "segments": [{"image": 0}, {"text": question, "loss": False},
                             {"text": answers[0], "loss": True}],
                "descriptor": None,
                "meta": {"qtype": qtype, "answer": answers[0], "answers": answers}})
  return out


def _mc_answer(entry: dict, choices: list, keys: list, path: str, where: str) -> str:
  """The text of the correct choice: `answer` is a choice's text, its key or its index."""
  if "answer" not in entry:
    raise DataError(f"{path}: {where} has no field 'answer'")
  answer = entry["answer"]
  if isinstance(answer, bool) or not isinstance(answer, (str, int)):
    raise DataError(f"{path}: {where} field 'answer' must be a choice's text, key or index, "
                    f"got {type(answer).__name__}")
  if isinstance(answer, int):
    if not 0 <= answer < len(choices):
      raise DataError(f"{path}: {where} field 'answer' index {answer} is outside the "
                      f"{len(choices)} choices")
    return choices[answer]
  if answer in keys:
    return choices[keys.index(answer)]
  if answer in choices:
    return answer
  raise DataError(f"{path}: {where} field 'answer' {answer!r} is neither a choice's text nor "
                  f"its key (choices: {choices})")


def _mc_choices(entry: dict, path: str, where: str) -> tuple[list, list]:
  """(choice texts, their keys): a list gives keys "A", "B", ...; an object its own keys."""
  raw = _field(entry, "choices", path, where, (list, dict))
  keys, choices = ((list(raw), list(raw.values())) if isinstance(raw, dict)
                   else ([chr(ord("A") + i) for i in range(len(raw))], list(raw)))
  if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
    raise DataError(f"{path}: {where} field 'choices' must hold at least 2 non-empty strings")
  if len(set(choices)) != len(choices):
    raise DataError(f"{path}: {where} field 'choices' has duplicates: {choices}")
  return choices, keys


def load_mc_json(path: str, image_root: str = "", limit: int = 0) -> list[dict]:
  """Multiple-choice records (module docstring): [image, question (no loss), correct choice
  (loss)]; meta {qtype, answer, answers, choices} and, with `statements`, the statement probe's
  {statements, statement_values (the choices), statement_answer}."""
  root, entries = _question_entries(path, image_root, limit)
  out = []
  for i, entry in enumerate(entries):
    where = f"entry {i}"
    question = _field(entry, "question", path, where)
    choices, keys = _mc_choices(entry, path, where)
    answer = _mc_answer(entry, choices, keys, path, where)
    meta = {"qtype": str(entry.get("question_type") or entry.get("category") or "all"),
            "answer": answer, "answers": [answer], "choices": choices}
    if "statements" in entry:
      statements = _field(entry, "statements", path, where, list)
      if len(statements) != len(choices) or not all(isinstance(s, str) for s in statements):
        raise DataError(f"{path}: {where} field 'statements' must hold one string per choice "
                        f"({len(choices)}), got {len(statements)}")
      meta.update(statements=statements, statement_values=choices, statement_answer=answer)
    image = _image_bytes(root, _field(entry, "image", path, where), path, where)
    out.append({"id": str(entry.get("id", i)), "kind": "vqa", "images": [image],
                "segments": [{"image": 0}, {"text": question, "loss": False},
                             {"text": answer, "loss": True}],
                "descriptor": None, "meta": meta})
  return out


def load_coco_captions(path: str, image_root: str = "", limit: int = 0) -> list[dict]:
  """Caption records (one per image): [image, first caption], meta {references: all captions}."""
  data = _load_json(path)
  if not isinstance(data, dict):
    raise DataError(f"{path}: expected an object with 'images' and 'annotations'")
  images = _field(data, "images", path, "top level", list)
  annotations = _field(data, "annotations", path, "top level", list)
  captions = collections.defaultdict(list)
  for i, ann in enumerate(annotations):
    where = f"annotations[{i}]"
    image_id = _field(ann, "image_id", path, where, (int, str))
    captions[image_id].append(_field(ann, "caption", path, where))
  root = image_root or os.path.dirname(os.path.abspath(path))
  out = []
  for i, img in enumerate(images):
    where = f"images[{i}]"
    image_id = _field(img, "id", path, where, (int, str))
    refs = captions.get(image_id)
    if not refs:
      raise DataError(f"{path}: {where} (id {image_id}) has no caption in 'annotations'")
    data_bytes = _image_bytes(root, _field(img, "file_name", path, where), path, where)
    out.append({"id": str(image_id), "kind": "caption", "images": [data_bytes],
                "segments": [{"image": 0}, {"text": refs[0], "loss": True}],
                "descriptor": None, "meta": {"references": refs}})
    if limit and len(out) >= limit:
      break
  return out


def records_from_setting(config, field: str, loader) -> list[dict]:
  """Records of the local file named by `eval.<field>` (images under `eval.image_root`), read by
  `loader(path, image_root, limit)`; a clear error when the field is empty."""
  path = config.eval[field]
  if not path:
    raise ConfigError(f"eval.{field}", "this evaluator needs the path of a local file")
  return loader(path, config.eval.image_root, int(config.eval.max_examples))
