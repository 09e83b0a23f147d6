"""The load generator's HTTP calls (songdaojia/loop.py `local_session`) go straight to the stack on this machine:
a proxy named in the environment is not asked (requests would look it up, and a .netrc and a CA bundle, on
every call)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from songdaojia.loop import local_session
from songdaojia.peers import free_port


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args):
        pass


@pytest.fixture
def local_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_a_proxy_in_the_environment_is_not_asked(local_server, monkeypatch):
    nobody = f"http://127.0.0.1:{free_port()}"  # a proxy nobody answers for
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", nobody)
    monkeypatch.setenv("http_proxy", nobody)
    with pytest.raises(requests.exceptions.ProxyError):  # what a session reading the environment does
        requests.Session().get(local_server, timeout=5)
    answer = local_session().get(local_server, timeout=5)
    assert (answer.status_code, answer.text) == (200, "ok")
