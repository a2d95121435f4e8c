"""Offline backend: each task's rule (mmscale.knowledge.tasks) over a vocabulary and a local
knowledge base, no model. It answers the same task messages an LLM would get and validates its
own answers against the same schemas, so stages cannot tell the backends apart."""
from mmscale.knowledge import schema as js
from mmscale.knowledge import vocab as vocab_lib
from mmscale.knowledge.llm.base import LLMBackend, LLMError, LLMInvalidOutput, parse_task_message


class OfflineContext:
  """What offline rules may read: the vocabulary and the knowledge base {name: entity}."""

  def __init__(self, vocab: vocab_lib.Vocabulary, kb: dict):
    self.vocab, self.kb = vocab, kb


class OfflineBackend(LLMBackend):
  """`vocab`: world.json / world dir / vocabulary JSON; `kb`: knowledge-base JSONL (optional)."""

  name = "offline"
  model = "rules"

  def __init__(self, vocab: str, kb: str | None = None):
    super().__init__()
    from mmscale.knowledge import tasks  # pylint: disable=import-outside-toplevel
    self._tasks = tasks.TASKS
    self.ctx = OfflineContext(vocab_lib.load_vocabulary(vocab), vocab_lib.load_kb(kb))

  def describe(self) -> dict:
    return {"backend": self.name, "model": self.model}

  def _one(self, messages: list, schema: dict):
    task, payload = parse_task_message(messages)
    if task not in self._tasks:
      raise LLMError(f"offline backend has no rule for task {task!r}")
    value = self._tasks[task].offline(payload, self.ctx)
    errors = js.schema_errors(value, schema)
    if errors:
      raise LLMInvalidOutput(f"offline rule {task} broke its schema: {errors[:3]}")
    return value

  def complete_json_batch(self, requests: list) -> list:
    out = []
    for messages, schema in requests:
      self.usage.requests += 1
      try:
        out.append(self._one(messages, schema))
      except LLMError as e:
        self.usage.failures += 1
        out.append(e)
    return out
