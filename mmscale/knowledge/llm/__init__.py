"""LLM backends behind one interface (`base.LLMBackend`), picked by name from `BACKENDS`.

`openai`: OpenAI-compatible chat-completions over HTTP (vLLM, SGLang, llama.cpp server, Ollama,
hosted APIs); `offline`: rules + a local knowledge-base file, no model.
"""
from mmscale.knowledge.llm.base import (LLMBackend, LLMError, LLMInvalidOutput, LLMRequestError,
                                        LLMTransportError, Usage)


def _openai(**kw):
  from mmscale.knowledge.llm.openai import OpenAIBackend  # pylint: disable=import-outside-toplevel
  return OpenAIBackend(**kw)


def _offline(**kw):
  from mmscale.knowledge.llm.offline import OfflineBackend  # pylint: disable=import-outside-toplevel
  return OfflineBackend(**kw)


BACKENDS = {"openai": _openai, "offline": _offline}


def make_backend(name: str, **kwargs) -> LLMBackend:
  """Backend `name` built with `kwargs` (see each class for its options)."""
  if name not in BACKENDS:
    raise ValueError(f"unknown LLM backend {name!r}; choose from {sorted(BACKENDS)}")
  return BACKENDS[name](**kwargs)


__all__ = ["BACKENDS", "LLMBackend", "LLMError", "LLMInvalidOutput", "LLMRequestError",
           "LLMTransportError", "Usage", "make_backend"]
