"""A small fault-injecting HTTP proxy for the tests: in front of a real OpenAI-compatible server, it
answers chosen requests with a fault instead of forwarding them.

    with FaultProxy(server.base_url, faults={"今天好累": ["429", "500"]}) as proxy:
        ... # point the client at proxy.base_url

``faults`` maps a user message (the last ``user`` turn of a chat request, exactly) to the actions its
successive requests meet, one per request, whichever style or sample they are for; when the list is
used up, requests are forwarded. An action ending in ``*`` repeats forever. Actions:

- ``429``: HTTP 429 with ``Retry-After: RETRY_AFTER_S`` (seconds);
- ``500``: HTTP 500 with an OpenAI error body;
- ``drop``: the connection is closed without an answer;
- ``slow:S``: the request waits S seconds before it is forwarded (a reply slower than the client's
  timeout: the client gives up and retries).

``delay`` slows every forwarded request (to stop a run midway). ``log`` records every request that
reached the proxy (arrival time, user message, the request's seed, action); ``forwarded`` counts the
chat requests that went through.
Standard library only; a test double that only injects faults, the answers come from the real server.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

RETRY_AFTER_S = 1


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that hung up: expected here
        pass


class FaultProxy:
    def __init__(self, upstream: str, faults: dict[str, Sequence[str]] | None = None, delay: float = 0.0):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.faults = {user: list(actions) for user, actions in (faults or {}).items()}
        self.delay = delay
        self.log: list[dict] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def attempts(self, user: str) -> list[dict]:
        """The log entries of the requests for one user message, in arrival order."""
        return [entry for entry in self.log if entry["user"] == user]

    def _next_action(self, user: str, seed: object) -> str:
        with self._lock:
            actions = self.faults.get(user)
            if not actions:
                action = "forward"
            elif actions[0].endswith("*"):
                action = actions[0][:-1]
            else:
                action = actions.pop(0)
            self.log.append({"time": time.monotonic(), "user": user, "seed": seed, "action": action})
            return action

    def _forward(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        if self.delay:
            time.sleep(self.delay)
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=300)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            with self._lock:
                self.forwarded += method == "POST"
            return response.status, response.getheader("Content-Type", "application/json"), data
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _reply(self, status: int, content_type: str, data: bytes,
                       extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(*proxy._forward("GET", self.path, None, {}))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    request = json.loads(body)
                    turns = request["messages"]
                    user = next(m["content"] for m in reversed(turns) if m.get("role") == "user")
                    seed = request.get("seed")
                except (ValueError, AttributeError, StopIteration, KeyError, TypeError):
                    user, seed = "", None
                action = proxy._next_action(user, seed)
                try:
                    if action == "429":
                        error = {"error": {"message": "rate limited (fault proxy)", "type": "rate_limit"}}
                        self._reply(429, "application/json", json.dumps(error).encode(),
                                    {"Retry-After": str(RETRY_AFTER_S)})
                    elif action == "500":
                        error = {"error": {"message": "injected failure (fault proxy)",
                                           "type": "server_error"}}
                        self._reply(500, "application/json", json.dumps(error).encode())
                    elif action == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                    else:
                        if action.startswith("slow:"):
                            time.sleep(float(action.split(":", 1)[1]))
                        headers = {"Content-Type": "application/json",
                                   "Authorization": self.headers.get("Authorization", "")}
                        self._reply(*proxy._forward("POST", self.path, body, headers))
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True  # the client gave up (its timeout): nothing to answer

        return Handler
