"""OpenAI-compatible chat-completions backend (vLLM, SGLang, llama.cpp server, Ollama, APIs).

Per request: the response cache is consulted first (a rerun after a crash resends nothing that
was answered); otherwise POST `{endpoint}/chat/completions` through the batch's pooled httpx
client (`http.py`: keep-alive connections, proxies from the environment, gzip, redirects) under a
semaphore of `concurrency` slots, with a per-attempt timeout, retrying 429 (honouring Retry-After), 5xx, timeouts and
connection errors with exponential backoff and jitter; the answer's content must parse as JSON
and validate against the schema, else the model is re-asked (its bad answer and the errors are
appended to the conversation) up to `max_reasks` times. The API key is read from the environment
variable named by `api_key_env` at request time and is never stored, logged, cached or written
into provenance (`describe()` lists the settings that are safe to record).
"""
import asyncio
import email.utils
import json
import os
import random
import re
import time

from mmscale.knowledge import schema as js
from mmscale.knowledge.llm import http
from mmscale.knowledge.llm.base import (LLMBackend, LLMError, LLMInvalidOutput, LLMRequestError,
                                        LLMTransportError)
from mmscale.knowledge.llm.cache import DiskCache, request_key

_RETRYABLE = (asyncio.TimeoutError, OSError, *http.RETRYABLE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
RESPONSE_FORMATS = {
    "json_schema": lambda schema: {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": schema, "strict": False}},
    "json_object": lambda schema: {"type": "json_object"},
    "none": lambda schema: None,
}


def parse_json_answer(content: str):
  """The JSON value of an answer, tolerating a ```json fence; ValueError otherwise."""
  text = content.strip()
  m = _FENCE.match(text)
  return json.loads(m.group(1) if m else text)


def retry_after_seconds(value: str | None) -> float | None:
  """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unparsable."""
  if not value:
    return None
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
  except (TypeError, ValueError):
    return None


class OpenAIBackend(LLMBackend):
  """See the module docstring. `endpoint` is the API base, e.g. http://localhost:8000/v1."""

  name = "openai"

  def __init__(self, endpoint: str, model: str, *, concurrency: int = 16,
               timeout_s: float = 120.0, max_retries: int = 6, max_reasks: int = 2,
               backoff_base_s: float = 0.5, backoff_max_s: float = 30.0,
               max_retry_after_s: float = 300.0, cache_dir: str | None = None,
               api_key_env: str | None = "OPENAI_API_KEY", temperature: float = 0.0,
               max_tokens: int = 1024, response_format: str = "json_schema",
               seed: int | None = 0, invalid_answers_dir: str | None = None,
               max_invalid_samples: int = 20):
    super().__init__()
    if response_format not in RESPONSE_FORMATS:
      raise ValueError(f"response_format must be one of {sorted(RESPONSE_FORMATS)}")
    self.endpoint = endpoint.rstrip("/")
    self.url = self.endpoint + "/chat/completions"
    self.model = model
    self.concurrency = max(1, int(concurrency))
    self.timeout_s, self.max_retries, self.max_reasks = timeout_s, max_retries, max_reasks
    self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
    self.max_retry_after_s = max_retry_after_s
    self.api_key_env = api_key_env
    self.temperature, self.max_tokens, self.seed = temperature, max_tokens, seed
    self.response_format = response_format
    self.cache = DiskCache(cache_dir) if cache_dir else None
    self.invalid_answers_dir = invalid_answers_dir
    self.max_invalid_samples = max_invalid_samples
    self.invalid_samples_written = 0

  def describe(self) -> dict:
    """Settings safe to record in provenance (no key, only the variable's name)."""
    return {"backend": self.name, "endpoint": self.endpoint, "model": self.model,
            "temperature": self.temperature, "response_format": self.response_format,
            "api_key_env": self.api_key_env}

  def __repr__(self) -> str:
    return f"OpenAIBackend({self.describe()})"

  # -- one HTTP exchange with retries ------------------------------------------------------
  def _headers(self) -> dict:
    key = os.environ.get(self.api_key_env) if self.api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}

  def _backoff(self, attempt: int) -> float:
    cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt)
    return random.uniform(cap / 2, cap)  # "equal jitter": spread out, never zero

  async def _post(self, body: dict, sem: asyncio.Semaphore, client) -> dict:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **self._headers()}
    last = "no attempt"
    for attempt in range(self.max_retries + 1):
      delay = None
      try:
        async with sem:
          self.usage.requests += 1
          resp = await asyncio.wait_for(client.post(self.url, content=data, headers=headers),
                                        self.timeout_s)
        status, headers_in, raw = resp.status_code, resp.headers, resp.content
      except http.FINAL as e:
        raise LLMRequestError(f"{self.url}: {type(e).__name__}: {e}") from None
      except _RETRYABLE as e:
        last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
      else:
        if status == 200:
          try:
            return json.loads(raw)
          except ValueError:
            last = "response body is not JSON"
        elif status == 429 or status >= 500:
          last = f"HTTP {status}"
          ra = retry_after_seconds(headers_in.get("retry-after"))
          if ra is not None:
            delay = min(ra, self.max_retry_after_s) + random.uniform(0, 0.05)
        else:
          raise LLMRequestError(f"HTTP {status} from {self.url}: "
                                f"{raw[:200].decode('utf-8', 'replace')}")
      if attempt == self.max_retries:
        break
      self.usage.retries += 1
      await asyncio.sleep(delay if delay is not None else self._backoff(attempt))
    raise LLMTransportError(f"{self.url}: gave up after {self.max_retries + 1} attempts "
                            f"({last})")

  # -- one answer, re-asked until it validates ---------------------------------------------
  def _body(self, messages: list, schema: dict) -> dict:
    body = {"model": self.model, "messages": messages, "temperature": self.temperature,
            "max_tokens": self.max_tokens}
    if self.seed is not None:
      body["seed"] = self.seed
    fmt = RESPONSE_FORMATS[self.response_format](schema)
    if fmt is not None:
      body["response_format"] = fmt
    return body

  def cache_key(self, messages: list, schema: dict) -> str:
    return request_key({"model": self.model, "messages": messages, "schema": schema,
                        "temperature": self.temperature, "max_tokens": self.max_tokens,
                        "seed": self.seed, "response_format": self.response_format})

  async def _answer(self, messages: list, schema: dict, sem: asyncio.Semaphore, client):
    key = self.cache_key(messages, schema)
    if self.cache is not None:
      hit = self.cache.get(key)
      if hit is not None:
        self.usage.cache_hits += 1
        return hit
    schema_note = ("\nAnswer with only a JSON object valid against this JSON schema:\n"
                   + json.dumps(schema))
    convo = [dict(messages[0], content=messages[0]["content"] + schema_note)] + messages[1:]
    errors = []
    for ask in range(self.max_reasks + 1):
      resp = await self._post(self._body(convo, schema), sem, client)
      usage = resp.get("usage") or {}
      self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
      self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
      try:
        content = resp["choices"][0]["message"]["content"] or ""
        value = parse_json_answer(content)
        errors = js.schema_errors(value, schema)
      except (KeyError, IndexError, TypeError) as e:
        content, errors = "", [f"malformed chat-completions response ({e})"]
      except ValueError as e:
        errors = [f"not valid JSON ({e})"]
      if not errors:
        if self.cache is not None:
          self.cache.put(key, value)
        return value
      if ask < self.max_reasks:
        self.usage.reasks += 1
        convo = convo + [{"role": "assistant", "content": content},
                         {"role": "user", "content": "That answer is invalid: "
                          + "; ".join(errors[:5]) + ". Reply again with only the JSON object."}]
    self._keep_invalid_sample(messages, content, errors)
    raise LLMInvalidOutput(f"no valid answer after {self.max_reasks + 1} asks: "
                           + "; ".join(errors[:3]))

  def _keep_invalid_sample(self, messages: list, content: str, errors: list) -> None:
    """Appends a rejected answer (the request's last user message, the model's last answer and
    why it failed) to `invalid_answers_dir/invalid-<pid>.jsonl`, at most `max_invalid_samples`
    per process: something to debug a prompt with, without keeping every failure."""
    if not self.invalid_answers_dir or self.invalid_samples_written >= self.max_invalid_samples:
      return
    self.invalid_samples_written += 1
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    os.makedirs(self.invalid_answers_dir, exist_ok=True)
    path = os.path.join(self.invalid_answers_dir, f"invalid-{os.getpid()}.jsonl")
    with open(path, "a") as f:
      f.write(json.dumps({"model": self.model, "request": user[:4000], "answer": content[:4000],
                          "errors": errors[:10]}, ensure_ascii=False) + "\n")

  async def _batch(self, requests: list) -> list:
    sem = asyncio.Semaphore(self.concurrency)

    async def one(messages, schema, client):
      try:
        return await self._answer(messages, schema, sem, client)
      except LLMError as e:
        self.usage.failures += 1
        return e

    async with http.make_client(self.concurrency, self.timeout_s) as client:
      return await asyncio.gather(*(one(m, s, client) for m, s in requests))

  def complete_json_batch(self, requests: list) -> list:
    """Runs the batch with at most `concurrency` requests in flight; see LLMBackend."""
    if not requests:
      return []
    return asyncio.run(self._batch(list(requests)))
