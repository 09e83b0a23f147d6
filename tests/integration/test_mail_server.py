"""The demo's and the benchmark's mail server (songdaojia/peers.py): a process of its own that takes mail over
SMTP and hands each message, parsed, to the residents reading it here."""
from __future__ import annotations

import os
import smtplib
import socket
import threading

import pytest

from songdaojia.peers import MailServer, free_port
from tests.waiting import wait_until


def test_mail_taken_in_its_own_process_reaches_the_reader_here():
    got, lock = [], threading.Lock()

    def read(message):
        with lock:
            got.append(message)

    server = MailServer(read).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            _code, _ = smtp.ehlo()
            refused = smtp.sendmail("songdaojia@localhost", ["wang@example.cn"],
                                    "Subject: =?utf-8?b?5bey5Y+X55CG?=\r\nTo: wang@example.cn\r\nMIME-Version: 1.0\r\n"
                                    "Content-Type: multipart/alternative; boundary=b\r\n\r\n"
                                    "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n")
        assert refused == {}
        wait_until(lambda: got, timeout=10, message="the message handed to the reader")
        assert str(got[0]["Subject"]) == "已受理" and got[0]["To"] == "wang@example.cn"
        body = got[0].get_payload()  # the residents read the headers: the body is handed on as it came, unparsed
        assert isinstance(body, str) and "--b\r\nContent-Type: text/plain\r\n\r\nhello" in body
        assert server.pid != os.getpid() and os.path.exists(f"/proc/{server.pid}")  # its CPU is counted apart
    finally:
        server.stop()
    assert server.pid is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass  # stopped: nobody listens any more


def test_a_port_in_use_is_not_taken_another_is():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        server = MailServer(lambda message: None, port=taken).start()
        try:
            assert server.port != taken
        finally:
            server.stop()
    assert free_port()
