"""Looks inside record directories: counts per kind, token-length and images-per-example
histograms (text), and a PNG contact sheet of a few examples with their text.

  python tools/inspect_data.py DIR [--tokenizer=MODEL] [--max_records=2000] [--sheet=OUT.png]

DIR is one record directory (holds manifest.json) or a world directory (every record directory
below it is inspected; its tokenizer.model is used for token lengths).
"""
import collections
import io
import itertools
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from mmscale import cli_flags  # noqa: E402
from mmscale.data import records  # noqa: E402
from mmscale.data.tokenizer import Tokenizer  # noqa: E402
from mmscale.errors import RecordFormatError  # noqa: E402


def find_record_dirs(root: str) -> list:
  if os.path.isfile(os.path.join(root, records.MANIFEST)):
    return [root]
  found = [d for d, _, files in os.walk(root) if records.MANIFEST in files]
  if not found:
    raise RecordFormatError(f"{root}: no {records.MANIFEST} found below it (expected a record "
                            "directory, docs/data_format.md)")
  return sorted(found)


def histogram(values: list, bins: int = 8, width: int = 40) -> str:
  """Text histogram: one line per bin with range, count and a bar."""
  if not values:
    return "    (empty)"
  lo, hi = min(values), max(values)
  step = max(1, -(-(hi - lo + 1) // bins))
  counts = collections.Counter((v - lo) // step for v in values)
  top = max(counts.values())
  lines = []
  for b in range(-(-(hi - lo + 1) // step)):
    n = counts.get(b, 0)
    a = lo + b * step
    lines.append(f"    {a:5d}-{a + step - 1:<5d} {n:7d} {'#' * max(n > 0, n * width // top)}")
  return "\n".join(lines)


def record_text(rec: dict) -> str:
  return " ".join(f"<img{s['image']}>" if "image" in s else
                  (s["text"] if s["loss"] else f"[{s['text']}]") for s in rec["segments"])


def token_length(rec: dict, tok) -> int:
  texts = [s["text"] for s in rec["segments"] if "text" in s]
  return sum(len(tok.encode(t)) if tok else len(t.split()) for t in texts)


def summarize(record_dir: str, tok, max_records: int) -> list:
  """Prints the summary of one directory; returns up to 3 records for the sheet."""
  manifest = records.read_manifest(record_dir)
  print(f"{record_dir}: {manifest['num_records']} records, counts {manifest['counts']}, "
        f"{len(manifest['shards'])} shards, source {manifest['source']}")
  lengths, images, kept = [], [], []
  for rec in itertools.islice(records.iter_records(record_dir), max_records):
    lengths.append(token_length(rec, tok))
    images.append(len(rec["images"]))
    if len(kept) < 3:
      kept.append(rec)
  unit = "tokens" if tok else "words"
  print(f"  text length ({unit}) over {len(lengths)} records:\n{histogram(lengths)}")
  print(f"  images per example:\n{histogram(images, bins=5)}")
  return kept


def contact_sheet(examples: list, path: str, scale: int = 2, width: int = 900) -> None:
  """One row per example: its images (upscaled, nearest) and its wrapped text."""
  rows = []
  for label, rec in examples:
    ims = [Image.open(io.BytesIO(b)).convert("RGB") for b in rec["images"]]
    ims = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in ims]
    text = textwrap.wrap(f"{label}: {record_text(rec)}", 100)
    h = max([im.height for im in ims] + [12 * len(text)]) + 8
    row = Image.new("RGB", (width, h), "white")
    x = 4
    for im in ims[:6]:
      row.paste(im, (x, 4))
      x += im.width + 4
    draw = ImageDraw.Draw(row)
    for k, line in enumerate(text):
      draw.text((max(x, 4) + 6, 4 + 12 * k), line, fill="black")
    rows.append(row)
  sheet = Image.new("RGB", (width, sum(r.height for r in rows) or 1), "white")
  y = 0
  for r in rows:
    sheet.paste(r, (0, y))
    y += r.height
  sheet.save(path)


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("tokenizer", None, "default: DIR/tokenizer.model if present",
                      flag_values=fv)
  flags.DEFINE_integer("max_records", 2000, None, flag_values=fv)
  flags.DEFINE_string("sheet", None, "PNG path; default DIR/inspect.png", flag_values=fv)


def main(argv: list[str]) -> None:
  """argv = [program, DIR] with flags anywhere (module docstring)."""
  args, rest = cli_flags.parse(define_flags, argv, doc=__doc__, positional=True)
  if len(rest) != 2:
    cli_flags.usage_error(f"give one directory DIR, not {len(rest) - 1} arguments {rest[1:]}")
  root = rest[1]
  tok_path = args.tokenizer or os.path.join(root, "tokenizer.model")
  tok = Tokenizer(tok_path) if os.path.isfile(tok_path) else None
  examples = []
  for d in find_record_dirs(root):
    label = os.path.relpath(d, root)
    examples += [(label, rec) for rec in summarize(d, tok, args.max_records)[:2]]
  sheet = args.sheet or os.path.join(root, "inspect.png")
  contact_sheet(examples, sheet)
  print(f"contact sheet of {len(examples)} examples: {sheet}")


if __name__ == "__main__":
  cli_flags.run(main)
