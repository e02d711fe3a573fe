"""A scripted OpenAI-compatible endpoint on 127.0.0.1 for the HTTP tests (bounded, local only)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubServer:
    """Answers the n-th POST with `respond(body, n)` -> (status, payload, headers); a payload is bytes
    or JSON-able. ("sleep", seconds, _) waits that long, then answers 200 with `late` (timeout tests).
    A GET of .../models lists `models` (OpenAI's model list); None answers it 404, as some servers do."""

    def __init__(self, respond: Callable, late: object = b"{}", models: list[str] | None = None):
        self.respond, self.late, self.models = respond, late, models
        self.bodies: list[dict] = []
        self.headers: list = []  # each request's headers, looked up by name in any case as HTTP has it
        self.paths: list[str] = []
        self.gets: list[tuple[str, dict]] = []  # (path, headers) of each GET, apart from the POSTs above
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                    outer.headers.append(self.headers)
                    outer.paths.append(self.path)
                    n = len(outer.bodies)
                status, payload, headers = outer.respond(body, n)
                if status == "sleep":
                    time.sleep(payload)
                    status, payload, headers = 200, outer.late, {}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout test)

            def do_GET(self):  # noqa: N802 - http.server's naming
                with outer.lock:
                    outer.gets.append((self.path, dict(self.headers)))
                found = self.path.endswith("/models") and outer.models is not None
                data = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in outer.models]}
                                  if found else {"error": "not found"}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
