"""The HTTP client of the OpenAI-compatible backend: one pooled `httpx.AsyncClient` per batch.

httpx keeps connections alive and reuses them across a batch's requests (at most `concurrency`
open: one TLS handshake per connection, not per request), takes proxies from the environment
(HTTP_PROXY / HTTPS_PROXY / ALL_PROXY / NO_PROXY), asks for and decodes gzip, and follows
redirects. Retries, backoff and Retry-After stay in `openai.py`, on top.
"""
from __future__ import annotations

import httpx

# Errors after which the same request may succeed: the connection, the proxy or the read failed
# (httpx.TransportError, timeouts included), or a compressed body was cut short.
RETRYABLE = (httpx.TransportError, httpx.DecodingError)
# Errors that no retry fixes: a URL httpx cannot send to, a redirect loop.
FINAL = (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects)


def make_client(concurrency: int, timeout_s: float) -> httpx.AsyncClient:
  """A client for one batch: `concurrency` pooled connections, `timeout_s` per connect / read /
  write / pool wait (the caller also bounds each whole attempt with asyncio.wait_for: a server
  trickling bytes never trips a per-read timeout)."""
  return httpx.AsyncClient(
      limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
      timeout=httpx.Timeout(timeout_s), follow_redirects=True, trust_env=True,
      headers={"Accept": "application/json"})
