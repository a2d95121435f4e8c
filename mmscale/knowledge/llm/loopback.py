"""A scriptable OpenAI-compatible chat-completions server on the loopback (stdlib http.server in
a thread), for tests and benches of the HTTP backend: no model, answers come from a callback,
faults (malformed JSON, schema-invalid JSON, 429 with Retry-After, 500, a hung connection, slow
answers) and transport variants (a gzip-compressed answer, a 307 redirect) from a script keyed by
request and attempt. HTTP/1.1 keep-alive, so clients can reuse connections (`peers` records the
client port of every request).
"""
import gzip
import http.server
import json
import threading
import time

from mmscale.knowledge.llm.base import parse_task_message


class _Server(http.server.ThreadingHTTPServer):
  request_queue_size = 256  # the default 5 drops bursts of concurrent connects (1 s SYN retry)


class LoopbackServer:
  """`answer(task, payload) -> dict`; `fault(key, attempt) -> None | (kind, arg)` with kind in
  malformed, bad_schema, 429 (arg = Retry-After), 500, hang (arg = seconds), slow (arg = s),
  gzip (the answer gzip-compressed if the request accepts it), redirect (307 to the same URL).
  `key(payload)` names a request for the script and for `hits` (requests received per key).
  `delay_s` is added to every answer (a model's latency)."""

  def __init__(self, answer, fault=None, key=None, delay_s: float = 0.0):
    self.answer, self.fault = answer, fault or (lambda k, a: None)
    self.key = key or (lambda payload: json.dumps(payload, sort_keys=True))
    self.delay_s = delay_s
    self.hits: dict = {}
    self.auth: list = []
    self.peers: list = []  # client (host, port) of every request: one port per connection
    self.accept_encoding: list = []
    self.lock = threading.Lock()
    self.server = _Server(("127.0.0.1", 0), self._handler())
    self.server.daemon_threads = True
    self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

  @property
  def endpoint(self) -> str:
    return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.server.shutdown()
    self.server.server_close()

  def _handler(self):
    outer = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):
        pass

      def _send(self, status, body: bytes, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
          self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

      def do_POST(self):  # noqa: N802  (http.server's naming)
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        task, payload = parse_task_message(req["messages"])
        key = outer.key(payload)
        with outer.lock:
          attempt = outer.hits.get(key, 0)
          outer.hits[key] = attempt + 1
          outer.auth.append(self.headers.get("Authorization"))
          outer.peers.append(self.client_address)
          outer.accept_encoding.append(self.headers.get("Accept-Encoding", ""))
        fault = outer.fault(key, attempt) or (None, None)
        kind, arg = fault
        if kind == "hang":
          time.sleep(arg)
          return
        if kind == "429":
          return self._send(429, b'{"error": "rate limited"}', [("Retry-After", str(arg))])
        if kind == "500":
          return self._send(500, b'{"error": "boom"}')
        if kind == "redirect":
          return self._send(307, b"{}", [("Location", self.path)])
        time.sleep(outer.delay_s + (arg if kind == "slow" else 0))
        content = json.dumps(outer.answer(task, payload))
        if kind == "malformed":
          content = content[:-3] + " oops"
        elif kind == "bad_schema":
          content = json.dumps({"unexpected": True})
        body = {"id": "x", "object": "chat.completion", "model": req["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        data = json.dumps(body).encode()
        if kind == "gzip" and "gzip" in self.headers.get("Accept-Encoding", ""):
          return self._send(200, gzip.compress(data), [("Content-Encoding", "gzip")])
        self._send(200, data)

    return Handler
