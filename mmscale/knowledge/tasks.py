"""Registry of the engine's LLM tasks: instructions, answer schema, prompt version, offline rule.

A stage builds a task input, `messages(task, payload)` wraps it (llm/base.py convention), and any
backend answers it; the offline backend runs `Task.offline(payload, ctx)`.
"""
import dataclasses
from typing import Callable

from mmscale.knowledge import caption2vqa, descriptors, enrich, filter as filter_lib, inject
from mmscale.knowledge import parse, vqa2caption
from mmscale.knowledge.llm.base import task_messages


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  instructions: str
  schema: dict
  version: str
  offline: Callable


def _offline_describe(payload: dict, ctx) -> dict:
  return parse.describe(payload["caption"], ctx.vocab, payload.get("grounding"))


TASKS = {t.name: t for t in (
    Task("describe", descriptors.DESCRIBE_INSTRUCTIONS, descriptors.DESCRIPTOR_SCHEMA,
         descriptors.DESCRIBE_PROMPT_VERSION, _offline_describe),
    Task("enrich", enrich.ENRICH_INSTRUCTIONS, enrich.ENRICH_SCHEMA,
         enrich.ENRICH_PROMPT_VERSION, enrich.offline_enrich),
    Task("compare", inject.COMPARE_INSTRUCTIONS, inject.COMPARE_SCHEMA,
         inject.COMPARE_PROMPT_VERSION, inject.offline_compare),
    Task("filter", filter_lib.FILTER_INSTRUCTIONS, filter_lib.FILTER_SCHEMA,
         filter_lib.FILTER_PROMPT_VERSION, filter_lib.offline_filter),
    Task("vqa2caption", vqa2caption.VQA2CAPTION_INSTRUCTIONS, vqa2caption.VQA2CAPTION_SCHEMA,
         vqa2caption.VQA2CAPTION_PROMPT_VERSION, vqa2caption.offline_vqa2caption),
    Task("caption2vqa", caption2vqa.CAPTION2VQA_INSTRUCTIONS, caption2vqa.CAPTION2VQA_SCHEMA,
         caption2vqa.CAPTION2VQA_PROMPT_VERSION, caption2vqa.offline_caption2vqa),
)}


def request(task: str, payload: dict) -> tuple:
  """(messages, schema) for one backend request."""
  t = TASKS[task]
  return task_messages(t.name, t.instructions, payload, t.version), t.schema
