"""Minimal asyncio HTTP/1.1 client for JSON POSTs (stdlib only).

Why not urllib in threads: bounded concurrency of hundreds of in-flight requests should cost
coroutines, not threads; aiohttp/httpx are not dependencies. One connection per request
(`Connection: close`) keeps the client simple and robust to servers that hang or drop
connections; LLM answers take far longer than a TCP handshake on the loopback or a LAN.
"""
import asyncio
import ssl
import urllib.parse


class ProtocolError(ConnectionError):
  """The server's answer is not valid HTTP/1.1."""


async def _read_body(reader: asyncio.StreamReader, headers: dict) -> bytes:
  if headers.get("transfer-encoding", "").lower() == "chunked":
    parts = []
    while True:
      line = await reader.readline()
      try:
        size = int(line.split(b";")[0].strip(), 16)
      except ValueError as e:
        raise ProtocolError(f"bad chunk size line {line!r}") from e
      if size == 0:
        await reader.readline()
        return b"".join(parts)
      parts.append(await reader.readexactly(size))
      await reader.readexactly(2)
  if "content-length" in headers:
    return await reader.readexactly(int(headers["content-length"]))
  return await reader.read()


async def post_json(url: str, body: bytes, headers: dict) -> tuple:
  """POST `body` to `url`; -> (status, headers with lowercase names, body bytes). The caller
  bounds the time with asyncio.wait_for (a hung server never returns on its own)."""
  u = urllib.parse.urlsplit(url)
  https = u.scheme == "https"
  port = u.port or (443 if https else 80)
  reader, writer = await asyncio.open_connection(
      u.hostname, port, ssl=ssl.create_default_context() if https else None)
  try:
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    head = [f"POST {path} HTTP/1.1", f"Host: {u.hostname}:{port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Connection: close", "Accept: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    status_line = await reader.readline()
    parts = status_line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
      raise ProtocolError(f"bad status line {status_line!r}")
    resp_headers = {}
    while True:
      line = await reader.readline()
      if line in (b"\r\n", b"\n", b""):
        break
      k, _, v = line.decode("latin-1").partition(":")
      resp_headers[k.strip().lower()] = v.strip()
    return int(parts[1]), resp_headers, await _read_body(reader, resp_headers)
  finally:
    writer.close()
    try:
      await writer.wait_closed()
    except (OSError, ssl.SSLError):
      pass
