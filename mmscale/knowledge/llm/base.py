"""The LLM interface of the knowledge engine and the task-message convention.

`complete_json(messages, schema) -> dict` returns an answer that validates against `schema`;
`complete_json_batch([(messages, schema), ...])` returns one result per request in order, an
`LLMError` instance in place of a failed answer, so one bad record never stops a batch and no
record is lost or duplicated.

Task messages: every stage builds `task_messages(task, instructions, payload, version)`; the
user message carries the task name, the prompt version and the input as JSON. A real model reads
the text; the offline backend parses the same message and runs the task's rule, so both backends
see exactly the same request (and the cache key covers the prompt version).
"""
import dataclasses
import json

from mmscale.errors import MmscaleError

_TASK_PREFIX = "task: "
_INPUT_MARK = "\ninput:\n"


class LLMError(MmscaleError):
  """A request produced no valid answer; `reason` is a short key for the summary counts."""

  reason = "llm_error"


class LLMTransportError(LLMError):
  """Retries exhausted on 429 / 5xx / timeouts / connection errors: the work is unfinished (a
  rerun retries it), not rejected."""

  reason = "transport"


class LLMInvalidOutput(LLMError):
  """The model kept answering text that is not JSON valid against the schema."""

  reason = "invalid_output"


class LLMRequestError(LLMError):
  """The server rejected this request (4xx other than 429): final for this record."""

  reason = "request_rejected"


@dataclasses.dataclass
class Usage:
  """Token and request accounting of one backend instance."""
  requests: int = 0
  prompt_tokens: int = 0
  completion_tokens: int = 0
  cache_hits: int = 0
  retries: int = 0
  reasks: int = 0
  failures: int = 0

  def add(self, other: "Usage | dict") -> "Usage":
    d = other if isinstance(other, dict) else dataclasses.asdict(other)
    for k, v in d.items():
      setattr(self, k, getattr(self, k) + int(v))
    return self

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


class LLMBackend:
  """One LLM: `name` (registry key), `model` (recorded in provenance), `usage`."""

  name = "base"
  model = ""

  def __init__(self):
    self.usage = Usage()

  def complete_json_batch(self, requests: list) -> list:
    """[(messages, schema)] -> [dict | LLMError], same order and length."""
    raise LLMError(f"{type(self).__name__} does not implement complete_json_batch")

  def complete_json(self, messages: list, schema: dict) -> dict:
    result = self.complete_json_batch([(messages, schema)])[0]
    if isinstance(result, LLMError):
      raise result
    return result

  def close(self) -> None:
    """Releases resources (nothing by default)."""


def task_messages(task: str, instructions: str, payload: dict, version: str) -> list:
  """Chat messages for one task request (see module docstring)."""
  user = (f"{_TASK_PREFIX}{task}\nprompt_version: {version}{_INPUT_MARK}"
          + json.dumps(payload, sort_keys=True, ensure_ascii=False))
  return [{"role": "system", "content": instructions}, {"role": "user", "content": user}]


def parse_task_message(messages: list) -> tuple:
  """(task, payload) from the first user message written by `task_messages`."""
  for m in messages:
    if m.get("role") == "user" and m.get("content", "").startswith(_TASK_PREFIX):
      head, _, body = m["content"].partition(_INPUT_MARK)
      return head.splitlines()[0][len(_TASK_PREFIX):], json.loads(body)
  raise LLMRequestError("no task message found (messages must come from task_messages)")
