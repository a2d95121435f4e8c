"""Ingestion: raw sources -> record directories (docs/data_format.md, "Ingestion").

A source is a small class built from (`--input`, `IngestOptions`) with three methods:
`describe() -> str` (the manifest's `source`), `units(target) -> [unit]` (JSON-safe pieces of
work, e.g. one tar or a byte range of a JSONL file) and `read(unit) -> iterator of records or
`Skipped`. `mmscale.data.ingest.beam_job.run_ingest` runs any of them as an Apache Beam job.
Registering a new source is one line in SOURCES (a `mmscale.registry.Registry`).
"""

from mmscale.data.ingest import common
from mmscale.data.ingest.interleaved import InterleavedSource
from mmscale.data.ingest.jsonl import JsonlCaptionSource
from mmscale.data.ingest.llava import LlavaSource
from mmscale.data.ingest.tfds_source import TfdsSource
from mmscale.data.ingest.webdataset import WebDatasetSource
from mmscale.errors import UnknownNameError
from mmscale.registry import Registry

SOURCES = Registry("ingest source")
SOURCES.add("webdataset", WebDatasetSource)
SOURCES.add("llava", LlavaSource)
SOURCES.add("interleaved", InterleavedSource)
SOURCES.add("tfds", TfdsSource)
SOURCES.add("jsonl", JsonlCaptionSource)


def make_source(kind: str, input_spec: str, options: common.IngestOptions):
  """The source registered as `kind`, reading `input_spec`.

  An unknown `kind` raises `UnknownNameError` naming the `--source` flag it came from.
  """
  try:
    source = SOURCES.get(kind)
  except UnknownNameError as e:
    raise UnknownNameError(f"--source={kind!r} is not one of {SOURCES.names()}") from e
  return source(input_spec, options)
