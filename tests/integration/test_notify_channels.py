"""Email and SMS channels against real local peers (songdaojia/peers.py)."""
from __future__ import annotations

import pickle
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.notify.channels import (
    DeliveryFailed,
    EmailChannel,
    Receipt,
    SmsChannel,
    channel_from_config,
)
from songdaojia.peers import LOCALHOST, free_port
from tests.smtp_sink import SmtpSink, body_text
from tests.http_recorder import HttpRecorder

SENDER = "noreply@songdaojia.example"
RESIDENT = "li.ayi@example.org"
SUBJECT = "【送到家】您的诉求已受理 工单号 SDJ-20240501-0007"
BODY = (
    "李阿姨，您好！\n\n"
    "您反映的“楼道路灯不亮”诉求已受理，工单号为 SDJ-20240501-0007。\n"
    "工作人员将在 30 分钟内与您联系。\n"
)


@pytest.fixture(params=["pipelining", "one command at a time"])
def smtp_sink(request) -> Iterator[SmtpSink]:
    """Each email test against a server that offers PIPELINING and one that does not."""
    with SmtpSink(pipelining=request.param == "pipelining") as sink:
        yield sink


class WireSmtp:
    """A bare SMTP server on a socket that keeps each read as it came off the wire: what a client's write
    held. Its EHLO offers PIPELINING, or not; it answers every command at once, in order."""

    def __init__(self, pipelining: bool):
        self.pipelining, self.reads = pipelining, []
        self._listener = socket.create_server((LOCALHOST, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.sendall(b"220 wire ESMTP\r\n")
            pending, in_data = b"", False
            while chunk := conn.recv(65536):
                self.reads.append(chunk)
                pending += chunk
                while True:
                    if in_data:
                        end = pending.find(b"\r\n.\r\n")
                        if end < 0:
                            break
                        pending, in_data = pending[end + 5:], False
                        conn.sendall(b"250 queued\r\n")
                        continue
                    line, sep, rest = pending.partition(b"\r\n")
                    if not sep:
                        break
                    pending = rest
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        offer = b"250-PIPELINING\r\n" if self.pipelining else b""
                        conn.sendall(b"250-wire\r\n" + offer + b"250 8BITMIME\r\n")
                    elif verb == b"DATA":
                        in_data = True
                        conn.sendall(b"354 go ahead\r\n")
                    elif verb == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        return
                    else:
                        conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def gateway() -> Iterator[HttpRecorder]:
    with HttpRecorder() as recorder:
        yield recorder


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def email_channel(port: int, timeout: float = 5.0) -> EmailChannel:
    return EmailChannel(LOCALHOST, port, SENDER, timeout=timeout)


# --- email -----------------------------------------------------------------


def test_email_is_delivered_with_chinese_text_and_idempotent_message_id(smtp_sink: SmtpSink) -> None:
    reference = email_channel(smtp_sink.port).send(RESIDENT, SUBJECT, BODY, message_id="notif-42")

    [message] = smtp_sink.wait_for(lambda messages: len(messages) == 1, timeout=5.0)
    assert message["Message-ID"] == "<notif-42@songdaojia>"
    assert message["Subject"] == SUBJECT
    assert message["From"] == SENDER
    assert message["To"] == RESIDENT
    assert body_text(message) == BODY
    assert reference == f"smtp:{LOCALHOST}:{smtp_sink.port}:<notif-42@songdaojia>"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one command at a time"])
def test_to_a_pipelining_server_mail_rcpt_and_data_go_in_one_write(pipelining: bool) -> None:
    """RFC 2920: one round trip before the text instead of three; a server that does not offer it is sent one
    command at a time, each after the answer to the one before."""
    server = WireSmtp(pipelining)
    try:
        receipt = email_channel(server.port).deliver(RESIDENT, SUBJECT, BODY, message_id="notif-9")
    finally:
        server.close()

    commands = [read for read in server.reads if read[:4].upper() != b"EHLO"][:3]
    if pipelining:
        assert commands[0] == (f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RESIDENT}>\r\nDATA\r\n").encode()
    else:
        assert commands == [f"mail FROM:<{SENDER}>\r\n".encode(), f"rcpt TO:<{RESIDENT}>\r\n".encode(),
                            b"data\r\n"]
    assert receipt.answer == "250 queued"


def test_the_receipt_keeps_the_servers_answer_to_data(smtp_sink: SmtpSink) -> None:
    """What the courier records as proof the server took the message (a kept connection answers too)."""
    channel = email_channel(smtp_sink.port)
    receipts = [channel.deliver(RESIDENT, SUBJECT, BODY, message_id=f"notif-{n}") for n in (20, 21)]

    assert receipts == [Receipt(f"smtp:{LOCALHOST}:{smtp_sink.port}:<notif-{n}@songdaojia>",
                                "250 Message accepted for delivery") for n in (20, 21)]


def test_resending_the_same_notification_reuses_its_message_id(smtp_sink: SmtpSink) -> None:
    channel = email_channel(smtp_sink.port)
    for _ in range(2):
        channel.send(RESIDENT, SUBJECT, BODY, message_id="notif-7")

    messages = smtp_sink.wait_for(lambda received: len(received) == 2, timeout=5.0)
    assert {message["Message-ID"] for message in messages} == {"<notif-7@songdaojia>"}
    assert smtp_sink.count_with("SDJ-20240501-0007") == 2
    assert smtp_sink.bodies() == [BODY, BODY]


def test_as_many_connections_are_kept_open_as_are_used_at_once(smtp_sink: SmtpSink) -> None:
    """Bursts of sends in flight together: the connections of one burst carry the next (no QUIT and reconnect)."""
    channel = EmailChannel(LOCALHOST, smtp_sink.port, SENDER, keep_open=4)
    for burst in range(3):
        together = threading.Barrier(4)

        def send(i: int, burst: int = burst, together: threading.Barrier = together) -> None:
            together.wait(timeout=5.0)
            channel.send(RESIDENT, SUBJECT, BODY, message_id=f"burst-{burst}-{i}")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, range(4)))

    smtp_sink.wait_for(lambda received: len(received) == 12, timeout=5.0)
    assert smtp_sink.connections() <= 4


def test_a_connection_closed_by_the_server_while_idle_is_replaced_transparently() -> None:
    port = free_port()
    with SmtpSink(port=port) as first:
        channel = email_channel(first.port)
        channel.send("a@village.example.cn", "第一封", "正文", "m-1")
        first.wait_for(lambda got: len(got) == 1)
    with SmtpSink(port=first.port) as second:  # the server restarted: the kept connection is dead
        channel.send("a@village.example.cn", "第二封", "正文", "m-2")
        got = second.wait_for(lambda got: len(got) == 1, description="the second message")
    assert str(got[0]["Subject"]) == "第二封"


def test_connection_refused_is_a_temporary_failure() -> None:
    nobody_listens = free_port()

    with pytest.raises(DeliveryFailed) as failure:
        email_channel(nobody_listens).send(RESIDENT, SUBJECT, BODY, message_id="notif-1")

    assert failure.value.permanent is False
    assert failure.value.channel == "email"
    assert str(nobody_listens) in str(failure.value)


def test_silent_smtp_server_times_out_as_a_temporary_failure(silent_port: int) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        email_channel(silent_port, timeout=0.3).send(RESIDENT, SUBJECT, BODY, message_id="notif-2")

    assert failure.value.permanent is False


def test_recipient_refused_with_5xx_is_permanent(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse_recipient("gone@example.org", "550 5.1.1 No such mailbox")

    with pytest.raises(DeliveryFailed) as failure:
        email_channel(smtp_sink.port).send("gone@example.org", SUBJECT, BODY, message_id="notif-3")

    assert failure.value.permanent is True
    assert "550" in str(failure.value) and "gone@example.org" in str(failure.value)
    assert smtp_sink.messages == []


def test_recipient_refused_with_4xx_is_temporary(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse_recipient("busy@example.org", "450 4.2.1 Mailbox busy, try later")

    with pytest.raises(DeliveryFailed) as failure:
        email_channel(smtp_sink.port).send("busy@example.org", SUBJECT, BODY, message_id="notif-4")

    assert failure.value.permanent is False


def test_header_injection_in_the_address_is_refused_before_sending(smtp_sink: SmtpSink) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        email_channel(smtp_sink.port).send(
            "a@example.org\nBcc: everyone@example.org", SUBJECT, BODY, message_id="notif-5"
        )

    assert failure.value.permanent is True


# --- sms -------------------------------------------------------------------


def test_sms_is_posted_with_idempotency_key(gateway: HttpRecorder) -> None:
    channel = SmsChannel(gateway.url, api_key="secret-token")

    reference = channel.send("13800138000", "您的诉求已受理，工单号 SDJ-20240501-0007", message_id="notif-9")

    [request] = gateway.wait_for(lambda requests: len(requests) == 1, timeout=5.0)
    assert request.method == "POST"
    assert request.path == "/sms"
    assert request.header("Idempotency-Key") == "notif-9"
    assert request.header("Authorization") == "Bearer secret-token"
    assert request.body == {
        "to": "13800138000",
        "text": "您的诉求已受理，工单号 SDJ-20240501-0007",
        "message_id": "notif-9",
    }
    assert reference == "gw-1"


def test_sms_keeps_its_connection_to_the_gateway_open_between_messages() -> None:
    with HttpRecorder(keep_alive=True) as gateway:
        channel = SmsChannel(gateway.url)
        for i in range(5):
            channel.send("13800138000", "hi", message_id=f"notif-keep-{i}")
        received = gateway.wait_for(lambda got: len(got) == 5)
    assert len({request.client_port for request in received}) == 1


def test_the_sms_receipt_keeps_the_gateways_answer(gateway: HttpRecorder) -> None:
    receipt = SmsChannel(gateway.url).deliver("13800138000", "hi", message_id="notif-16")

    assert receipt.reference == "gw-1"
    assert receipt.answer.startswith("gateway answered HTTP 200") and "gw-1" in receipt.answer


def test_sms_without_api_key_sends_no_authorization(gateway: HttpRecorder) -> None:
    SmsChannel(gateway.url).send("13800138000", "hi", message_id="notif-10")

    [request] = gateway.wait_for(lambda requests: len(requests) == 1, timeout=5.0)
    assert request.header("Authorization") is None


def test_gateway_500_is_temporary_and_a_retry_succeeds(gateway: HttpRecorder) -> None:
    channel = SmsChannel(gateway.url)
    gateway.fail_next(1, status=500)

    with pytest.raises(DeliveryFailed) as failure:
        channel.send("13800138000", "hi", message_id="notif-11")
    assert failure.value.permanent is False
    assert "500" in str(failure.value)

    assert channel.send("13800138000", "hi", message_id="notif-11") == "gw-2"
    requests = gateway.wait_for(lambda received: len(received) == 2, timeout=5.0)
    assert [r.header("Idempotency-Key") for r in requests] == ["notif-11", "notif-11"]
    assert [r.status for r in requests] == [500, 200]


def test_gateway_400_is_permanent(gateway: HttpRecorder) -> None:
    gateway.fail_next(1, status=400)

    with pytest.raises(DeliveryFailed) as failure:
        SmsChannel(gateway.url).send("not-a-phone", "hi", message_id="notif-12")

    assert failure.value.permanent is True
    assert gateway.url in str(failure.value)


def test_gateway_429_is_temporary(gateway: HttpRecorder) -> None:
    gateway.fail_next(1, status=429)

    with pytest.raises(DeliveryFailed) as failure:
        SmsChannel(gateway.url).send("13800138000", "hi", message_id="notif-13")

    assert failure.value.permanent is False


def test_unreachable_gateway_is_temporary() -> None:
    url = f"http://{LOCALHOST}:{free_port()}/sms"

    with pytest.raises(DeliveryFailed) as failure:
        SmsChannel(url, timeout=2.0).send("13800138000", "hi", message_id="notif-14")

    assert failure.value.permanent is False


def test_silent_gateway_times_out_as_temporary(silent_port: int) -> None:
    url = f"http://{LOCALHOST}:{silent_port}/sms"

    with pytest.raises(DeliveryFailed) as failure:
        SmsChannel(url, timeout=0.3).send("13800138000", "hi", message_id="notif-15")

    assert failure.value.permanent is False


# --- wiring ----------------------------------------------------------------


def test_channels_pick_their_address_from_a_contact() -> None:
    email = channel_from_config({"kind": "email", "host": LOCALHOST, "port": "2525", "sender": SENDER})
    sms = channel_from_config({"kind": "sms", "url": "http://gw.example/sms", "api_key": "k"})
    contact = {"phone": "13800138000", "email": RESIDENT}

    assert (email.kind, email.port, email.address_of(contact)) == ("email", 2525, RESIDENT)
    assert (sms.kind, sms.api_key, sms.address_of(contact)) == ("sms", "k", "13800138000")
    assert email.address_of({"phone": "13800138000"}) is None
    assert sms.address_of({"email": RESIDENT, "phone": ""}) is None


@pytest.mark.parametrize(
    ("cfg", "named_key"),
    [
        ({"kind": "fax", "number": "1"}, "kind"),
        ({"host": LOCALHOST}, "kind"),
        ({"kind": "email", "host": LOCALHOST, "sender": SENDER}, "port"),
        ({"kind": "email", "host": LOCALHOST, "port": "smtp", "sender": SENDER}, "port"),
        ({"kind": "sms", "url": "http://gw.example/sms", "api-key": "k"}, "api-key"),
    ],
)
def test_bad_channel_config_names_the_key(cfg: dict, named_key: str) -> None:
    with pytest.raises(ValueError, match=named_key):
        channel_from_config(cfg)


def test_delivery_failed_survives_pickling() -> None:
    original = DeliveryFailed("sms", "http://gw.example/sms", "HTTP 400", permanent=True)

    copy = pickle.loads(pickle.dumps(original))

    assert (copy.channel, copy.peer, copy.permanent, str(copy)) == (
        original.channel, original.peer, True, str(original),
    )


def test_wait_for_gives_up_at_its_deadline_with_a_description(gateway: HttpRecorder) -> None:
    with pytest.raises(TimeoutError, match="a reply that never comes"):
        gateway.wait_for(lambda: False, timeout=0.1, description="a reply that never comes")
