"""LLM backends behind one interface (`base.LLMBackend`), picked by name from `BACKENDS`.

`openai`: OpenAI-compatible chat-completions over HTTP (vLLM, SGLang, llama.cpp server, Ollama,
hosted APIs); `offline`: rules + a local knowledge-base file, no model.
"""
from mmscale.knowledge.llm.base import (LLMBackend, LLMError, LLMInvalidOutput, LLMRequestError,
                                        LLMTransportError, Usage)
from mmscale.registry import Registry


def _openai(**kw):
  from mmscale.knowledge.llm.openai import OpenAIBackend  # pylint: disable=import-outside-toplevel
  return OpenAIBackend(**kw)


def _offline(**kw):
  from mmscale.knowledge.llm.offline import OfflineBackend  # pylint: disable=import-outside-toplevel
  return OfflineBackend(**kw)


BACKENDS = Registry("LLM backend")
BACKENDS.add("openai", _openai)
BACKENDS.add("offline", _offline)


def make_backend(name: str, **kwargs) -> LLMBackend:
  """Backend `name` built with `kwargs` (see each class for its options); an unknown name raises
  `UnknownNameError` listing the known backends."""
  return BACKENDS.get(name)(**kwargs)


__all__ = ["BACKENDS", "LLMBackend", "LLMError", "LLMInvalidOutput", "LLMRequestError",
           "LLMTransportError", "Usage", "make_backend"]
