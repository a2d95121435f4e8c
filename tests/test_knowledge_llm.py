"""The OpenAI-compatible backend against a real chat-completions server on the loopback:
malformed JSON (re-ask), 429 with Retry-After, 500, a hung connection (timeout), slow answers;
no request lost or duplicated; a rerun after a crash resends nothing that was answered."""
import os
import time

import pytest

from mmscale.knowledge import schema as js
from mmscale.knowledge.llm import LLMInvalidOutput, LLMTransportError, make_backend
from mmscale.knowledge.llm.base import task_messages
from mmscale.knowledge.llm.loopback import LoopbackServer

SCHEMA = js.obj({"echo": {"type": "string"}, "n": {"type": "integer"}})


def answer(task, payload):
  return {"echo": payload["name"], "n": payload["n"]}


def req(name, n=0):
  return task_messages("echo", "Echo the input.", {"name": name, "n": n}, "echo-v1"), SCHEMA


SCRIPT = {"malformed": [("malformed", None)], "bad_schema": [("bad_schema", None)],
          "rate": [("429", 0.3)], "err": [("500", None), ("500", None)],
          "hang": [("hang", 2.0)], "slow": [("slow", 0.3)],
          "always_bad": [("malformed", None)] * 10}


def fault(key, attempt):
  steps = SCRIPT.get(key.split("#")[0], [])
  return steps[attempt] if attempt < len(steps) else None


def backend(server, tmp_path, **kw):
  opts = dict(endpoint=server.endpoint, model="m", concurrency=8, timeout_s=0.6, max_retries=3,
              max_reasks=2, backoff_base_s=0.05, backoff_max_s=0.2, api_key_env="MMSCALE_TEST_KEY",
              cache_dir=str(tmp_path / "cache"))
  return make_backend("openai", **{**opts, **kw})


@pytest.fixture()
def server():
  with LoopbackServer(answer, fault, key=lambda p: f"{p['name']}#{p['n']}") as s:
    yield s


def test_every_fault_is_survived_and_nothing_is_lost_or_duplicated(server, tmp_path, monkeypatch):
  monkeypatch.setenv("MMSCALE_TEST_KEY", "sekrit-123")
  names = ["malformed", "bad_schema", "rate", "err", "hang", "slow", "always_bad"] + [
      f"ok{i}" for i in range(30)]
  b = backend(server, tmp_path)
  t0 = time.time()
  results = b.complete_json_batch([req(n, i) for i, n in enumerate(names)])
  assert time.time() - t0 < 10
  assert len(results) == len(names)
  for i, (n, r) in enumerate(zip(names, results)):
    if n == "always_bad":
      assert isinstance(r, LLMInvalidOutput)
    else:
      assert r == {"echo": n, "n": i}, n
  hits = {k.split("#")[0]: v for k, v in server.hits.items()}
  assert hits["malformed"] == 2 and hits["bad_schema"] == 2 and hits["rate"] == 2
  assert hits["err"] == 3 and hits["hang"] == 2 and hits["slow"] == 1
  assert hits["always_bad"] == 3  # one ask + max_reasks re-asks
  assert all(hits[f"ok{i}"] == 1 for i in range(30))
  u = b.usage
  assert u.reasks == 4 and u.retries >= 4 and u.failures == 1
  assert u.prompt_tokens == 10 * (u.requests - 4) and u.completion_tokens == 5 * (u.requests - 4)
  # The key reached the server, and nowhere else.
  assert set(server.auth) == {"Bearer sekrit-123"}
  assert "sekrit" not in repr(b) and "sekrit" not in str(b.describe())
  for root, _, files in os.walk(tmp_path / "cache"):
    for f in files:
      assert "sekrit" not in open(os.path.join(root, f)).read()


def test_retry_after_is_honoured(server, tmp_path):
  b = backend(server, tmp_path, backoff_base_s=0.0, backoff_max_s=0.0)
  t0 = time.time()
  assert b.complete_json(*req("rate", 7)) == {"echo": "rate", "n": 7}
  assert time.time() - t0 >= 0.3


def test_transport_failure_after_retries_is_reported_not_raised(tmp_path):
  with LoopbackServer(answer, lambda k, a: ("500", None)) as s:
    b = backend(s, tmp_path, max_retries=2)
    out = b.complete_json_batch([req("x"), req("y")])
    assert all(isinstance(r, LLMTransportError) for r in out)
    assert sum(s.hits.values()) == 6


def test_rerun_after_crash_resends_nothing_finished(server, tmp_path):
  first = backend(server, tmp_path)
  assert first.complete_json_batch([req(f"job{i}", i) for i in range(10)])  # then "crash"
  again = backend(server, tmp_path)
  out = again.complete_json_batch([req(f"job{i}", i) for i in range(20)])
  assert out == [{"echo": f"job{i}", "n": i} for i in range(20)]
  assert all(server.hits[f"job{i}#{i}"] == 1 for i in range(20))
  assert again.usage.cache_hits == 10 and again.usage.requests == 10


def test_concurrency_bounds_requests_in_flight(tmp_path):
  with LoopbackServer(answer, delay_s=0.1) as s:
    t0 = time.time()
    backend(s, tmp_path, concurrency=10, cache_dir=None).complete_json_batch(
        [req(f"c{i}") for i in range(20)])
    elapsed = time.time() - t0
  assert 0.2 <= elapsed < 1.5  # two waves of 10, not 20 sequential answers


def test_connections_are_pooled_gzip_decoded_and_redirects_followed(tmp_path):
  script = {"zipped": [("gzip", None)], "moved": [("redirect", None)]}
  def fault(key, attempt):  # the first attempt only: the redirect's target is attempt 1
    return script.get(key.split("#")[0], [None])[0] if attempt == 0 else None

  with LoopbackServer(answer, fault, key=lambda p: f"{p['name']}#{p['n']}") as s:
    b = backend(s, tmp_path, concurrency=4, cache_dir=None)
    names = ["zipped", "moved"] + [f"p{i}" for i in range(22)]
    out = b.complete_json_batch([req(n, i) for i, n in enumerate(names)])
  assert out == [{"echo": n, "n": i} for i, n in enumerate(names)]
  assert s.hits["moved#1"] == 2 and s.hits["zipped#0"] == 1
  assert all("gzip" in a for a in s.accept_encoding)
  # 25 requests over at most 4 kept-alive connections, not one connection per request
  assert len(s.peers) == 25 and len(set(s.peers)) <= 4


def test_proxy_is_taken_from_the_environment(tmp_path, monkeypatch):
  """HTTP_PROXY routes the request through the proxy (here a second loopback server answering
  the absolute-URI request itself); the endpoint's host is never contacted."""
  with LoopbackServer(answer) as proxy:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    b = backend(proxy, tmp_path, endpoint="http://llm.invalid:8000/v1", cache_dir=None,
                max_retries=0)
    assert b.complete_json(*req("via-proxy", 3)) == {"echo": "via-proxy", "n": 3}
    assert sum(proxy.hits.values()) == 1
