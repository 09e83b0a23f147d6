"""Delivery channels of the notify service: SMTP email and an HTTP SMS gateway.

Plain library code (no nameko), so it can be tested against local peers and
reused by the demo. Every send carries the caller's `message_id` as an
idempotency key: a retried delivery reaches the peer with the same key. An SMS
gateway that honours `Idempotency-Key` drops the repeat; an ordinary mail server
delivers it (the stable Message-ID only lets a mail client or a human see it is
the same message).

`deliver(...)` returns a `Receipt`: the reference (what the courier publishes in
`resident_notified`) and the peer's own answer (SMTP reply to DATA, HTTP status
and body), kept in the delivery log as proof of hand-over. `send(...)` returns
the reference alone.
"""
from __future__ import annotations

import base64
import re
import smtplib
from collections.abc import Mapping
from email.header import Header
from email.utils import formatdate
from typing import Any, NamedTuple

import requests
from requests.adapters import HTTPAdapter

MESSAGE_ID_DOMAIN = "songdaojia"

_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")  # one plain address, nothing to smuggle

# These 4xx answers mean "not now", not "never": retrying later can succeed.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})

_REASON_SNIPPET_CHARS = 200


class Receipt(NamedTuple):
    """A message the peer accepted: our reference for it, and what the peer answered."""
    reference: str
    answer: str


class DeliveryFailed(Exception):
    """A notification could not be handed to its peer.

    `permanent` tells the caller whether retrying the same message can help:
    True for refusals (SMTP 5xx, HTTP 4xx), False for outages and timeouts.
    """

    def __init__(self, channel: str, peer: str, reason: str, permanent: bool = False):
        self.channel = channel
        self.peer = peer
        self.reason = reason
        self.permanent = permanent
        verdict = "permanent, do not retry" if permanent else "temporary, retry later"
        super().__init__(f"{channel} delivery via {peer} failed ({verdict}): {reason}")

    def __reduce__(self):
        # The default reduce would replay only the formatted message as args.
        return (type(self), (self.channel, self.peer, self.reason, self.permanent))


def _require_text(value: str | None, what: str) -> str:
    if value is None or not str(value).strip():
        raise ValueError(f"{what} must be a non-empty string")
    return str(value).strip()


def _contact_value(contact: Mapping[str, Any] | None, key: str) -> str | None:
    if not contact:
        return None
    value = contact.get(key)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


class EmailChannel:
    """Sends UTF-8 plain-text mail over SMTP, keeping connections open between messages: as many as are used
    at once (`keep_open`, the courier's sends in flight), so a burst does not open and QUIT a connection per
    message (measured: QUIT alone was 5 % of notify's CPU with 8 kept for 20 sends in flight). To a server that
    offers PIPELINING (RFC 2920) a message's MAIL, RCPT and DATA go in one write (`_send_pipelined`)."""

    kind = "email"

    def __init__(self, host: str, port: int, sender: str, timeout: float = 5.0, keep_open: int = 8):
        self.host = host
        self.port = int(port)
        self.sender = sender
        self.timeout = float(timeout)
        self.keep_open = int(keep_open)
        self._idle: list[smtplib.SMTP] = []

    @property
    def peer(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def address_of(self, contact: Mapping[str, Any] | None) -> str | None:
        return _contact_value(contact, "email")

    def send(self, to: str, subject: str, body: str, message_id: str) -> str:
        return self.deliver(to, subject, body, message_id).reference

    def deliver(self, to: str, subject: str, body: str, message_id: str) -> Receipt:
        """Hand one message to the server; the receipt carries its reply to DATA (e.g. `250 2.0.0 queued as …`)."""
        header_id = f"<{_require_text(message_id, 'message_id')}@{MESSAGE_ID_DOMAIN}>"
        recipient = (to or "").strip()
        raw = self._compose(recipient, subject, body, header_id)
        answer = self._transmit(raw, recipient)
        return Receipt(f"smtp:{self.host}:{self.port}:{header_id}", answer)

    def _compose(self, to: str, subject: str, body: str, header_id: str) -> bytes:
        """The message as bytes, built directly: the `email` package's policy machinery
        cost more CPU than everything else about a delivery."""
        if not to:
            raise self._failure("no recipient address", permanent=True)
        for name, value in (("To", to), ("From", self.sender)):
            if any(c in value for c in "\r\n\0") or not _ADDRESS.match(value):
                raise self._failure(f"invalid header: {name} {value!r} is not one address",
                                    permanent=True)
        # A subject is one line; template fields must not be able to break it.
        subject = Header(" ".join(subject.split()), "utf-8").encode(linesep="\r\n")
        # base64 keeps Chinese text intact through relays that do not announce 8BITMIME
        text = base64.encodebytes(body.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
        headers = (f"From: {self.sender}", f"To: {to}", f"Subject: {subject}",
                   f"Date: {formatdate(localtime=True)}", f"Message-ID: {header_id}", "MIME-Version: 1.0",
                   'Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: base64")
        return ("\r\n".join(headers) + "\r\n\r\n" + text).encode("ascii")

    def _transmit(self, message: bytes, recipient: str) -> str:
        if self._idle:
            try:
                return self._send_on(self._idle.pop(), message, recipient, idle=True)
            except _Stale:  # the server closed it while idle; nothing was sent on it
                return self._send_on(self._connect(), message, recipient)
        return self._send_on(self._connect(), message, recipient)

    def _connect(self) -> _SMTP:
        try:
            # a fixed local name: smtplib would otherwise look up this host's FQDN on every connect
            return _SMTP(self.host, self.port, timeout=self.timeout, local_hostname="localhost")
        except smtplib.SMTPResponseException as exc:
            raise self._failure(_smtp_reason("greeting", exc), _is_5xx(exc.smtp_code)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._failure(f"cannot connect: {exc!r}", permanent=False) from exc

    def _send_on(self, smtp: _SMTP, message: bytes, recipient: str, idle: bool = False) -> str:
        """One recipient: refused, sendmail raises SMTPRecipientsRefused (it returns refusals only for several).
        Returns the server's reply to DATA: it took the message."""
        try:
            smtp.data_answer = ""
            smtp.ehlo_or_helo_if_needed()
            if smtp.has_extn("pipelining"):
                _send_pipelined(smtp, self.sender, recipient, message)
            else:
                smtp.sendmail(self.sender, [recipient], message)
        except smtplib.SMTPServerDisconnected as exc:
            smtp.close()
            if idle:
                raise _Stale() from exc
            raise self._failure(f"connection broke while sending: {exc!r}", permanent=False) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            self._keep(smtp)  # the connection is fine; the address is not
            raise self._refused(exc.recipients) from exc
        except smtplib.SMTPNotSupportedError as exc:  # e.g. non-ASCII address without SMTPUTF8
            smtp.close()
            raise self._failure(f"server cannot take this message: {exc}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            _quit_quietly(smtp)
            raise self._failure(_smtp_reason("send", exc), _is_5xx(exc.smtp_code)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise self._failure(f"connection broke while sending: {exc!r}", permanent=False) from exc
        answer = smtp.data_answer
        self._keep(smtp)
        return answer

    def _keep(self, smtp: smtplib.SMTP) -> None:
        if len(self._idle) < self.keep_open:
            self._idle.append(smtp)
        else:
            _quit_quietly(smtp)

    def _refused(self, recipients: Mapping[str, tuple[int, bytes]]) -> DeliveryFailed:
        details = "; ".join(
            f"{address}: {code} {_decode(text)}" for address, (code, text) in recipients.items()
        )
        permanent = all(_is_5xx(code) for code, _ in recipients.values())
        return self._failure(f"recipient refused ({details})", permanent)

    def _failure(self, reason: str, permanent: bool) -> DeliveryFailed:
        return DeliveryFailed(self.kind, self.peer, reason, permanent)


class _SMTP(smtplib.SMTP):
    """smtplib's client, keeping the server's reply to DATA (sendmail drops it): the proof of hand-over."""

    data_answer = ""

    def data(self, msg):
        code, text = super().data(msg)
        self.data_answer = f"{code} {_decode(text)}"[:300]
        return code, text


def _send_pipelined(smtp: _SMTP, sender: str, recipient: str, message: bytes) -> None:
    """One message to one recipient, MAIL, RCPT and DATA in one write and their three answers read after it:
    one round trip where sendmail makes three. The text goes only after the server's 354, so a connection
    found closed has carried nothing. Raises what sendmail raises for the same answers (the caller maps them)."""
    size = f" SIZE={len(message)}" if smtp.has_extn("size") else ""
    smtp.send(f"MAIL FROM:{smtplib.quoteaddr(sender)}{size}\r\nRCPT TO:{smtplib.quoteaddr(recipient)}\r\n"
              "DATA\r\n")
    mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
    refused = mail[0] != 250 or rcpt[0] not in (250, 251)
    if data[0] == 354 and refused:  # a server that took DATA anyway: an empty message it must not deliver
        smtp.send(b".\r\n")
        smtp.getreply()
    if refused or data[0] != 354:
        try:
            smtp.rset()
        except smtplib.SMTPServerDisconnected:
            pass
    if mail[0] != 250:
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
    if rcpt[0] not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
    if data[0] != 354:
        raise smtplib.SMTPDataError(*data)
    text = _LEADING_DOT.sub(b"..", message)  # as smtplib's data(): a line's leading dot doubled
    smtp.send(text + (b"" if text.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    code, answer = smtp.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, answer)
    smtp.data_answer = f"{code} {_decode(answer)}"[:300]


_LEADING_DOT = re.compile(rb"(?m)^\.")


class _Stale(Exception):
    """An idle SMTP connection turned out to be closed."""


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    # Once the server accepted the DATA, a failing QUIT must not turn a
    # delivered message into a reported failure (that would cause a resend).
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _is_5xx(code: int) -> bool:
    return 500 <= code < 600


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _smtp_reason(stage: str, exc: smtplib.SMTPResponseException) -> str:
    return f"server answered {exc.smtp_code} at {stage}: {_decode(exc.smtp_error)}"


class SmsChannel:
    """Client of an HTTP SMS gateway taking JSON `{"to", "text", "message_id"}`, on keep-alive connections:
    as many kept as are used at once (`keep_open`), not a new connection per message."""

    kind = "sms"

    def __init__(self, url: str, timeout: float = 5.0, api_key: str | None = None, keep_open: int = 8):
        self.url = url
        self.timeout = float(timeout)
        self.api_key = api_key
        self._http = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=int(keep_open))
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)

    @property
    def peer(self) -> str:
        return self.url

    def address_of(self, contact: Mapping[str, Any] | None) -> str | None:
        return _contact_value(contact, "phone")

    def send(self, phone: str, text: str, message_id: str) -> str:
        return self.deliver(phone, text, message_id).reference

    def deliver(self, phone: str, text: str, message_id: str) -> Receipt:
        """Post one message; the receipt carries the gateway's answer (HTTP status and the start of its body)."""
        message_id = _require_text(message_id, "message_id")
        if not phone or not phone.strip():
            raise self._failure("no phone number", permanent=True)
        response = self._post(
            {"to": phone.strip(), "text": text, "message_id": message_id},
            headers=self._headers(message_id),
        )
        if not 200 <= response.status_code < 300:
            raise self._failure(_http_reason(response), _is_permanent_status(response.status_code))
        return Receipt(_gateway_reference(response) or f"sms:{message_id}", _http_reason(response)[:300])

    def _headers(self, message_id: str) -> dict[str, str]:
        headers = {"Idempotency-Key": message_id}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _post(self, payload: dict[str, str], headers: dict[str, str]) -> requests.Response:
        try:
            return self._http.post(self.url, json=payload, headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise self._failure(f"no answer within {self.timeout:g}s: {exc}", permanent=False) from exc
        except requests.RequestException as exc:
            raise self._failure(f"cannot reach gateway: {exc}", permanent=False) from exc

    def _failure(self, reason: str, permanent: bool) -> DeliveryFailed:
        return DeliveryFailed(self.kind, self.peer, reason, permanent)


def _is_permanent_status(status: int) -> bool:
    return 400 <= status < 500 and status not in _RETRYABLE_CLIENT_STATUSES


def _http_reason(response: requests.Response) -> str:
    snippet = response.text[:_REASON_SNIPPET_CHARS].strip()
    reason = f"gateway answered HTTP {response.status_code} {response.reason or ''}".rstrip()
    return f"{reason}: {snippet}" if snippet else reason


def _gateway_reference(response: requests.Response) -> str | None:
    try:
        reply = response.json()
    except ValueError:  # a 2xx without a JSON body still means "accepted"
        return None
    if isinstance(reply, dict) and reply.get("id") not in (None, ""):
        return str(reply["id"])
    return None


_CHANNEL_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required keys, optional keys), "kind" itself excluded
    "email": (frozenset({"host", "port", "sender"}), frozenset({"timeout"})),
    "sms": (frozenset({"url"}), frozenset({"api_key", "timeout"})),
}


def channel_from_config(cfg: Mapping[str, Any], keep_open: int = 8) -> EmailChannel | SmsChannel:
    """Build a channel from e.g. {"kind": "email", "host", "port", "sender"}; it keeps `keep_open` connections
    to its peer open (the sends its user has in flight at most)."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"notify channel config must be a mapping, got {type(cfg).__name__}")
    kind = cfg.get("kind")
    if kind not in _CHANNEL_KEYS:
        expected = " or ".join(repr(k) for k in _CHANNEL_KEYS)
        raise ValueError(f"notify channel config: key 'kind' is {kind!r}, expected {expected}")
    _check_keys(kind, cfg)
    options = {key: value for key, value in cfg.items() if key != "kind"}
    if "timeout" in options:
        options["timeout"] = _as_number(cfg, "timeout", float)
    if kind == "email":
        options["port"] = _as_number(cfg, "port", int)
        return EmailChannel(**options, keep_open=keep_open)
    return SmsChannel(**options, keep_open=keep_open)


def _check_keys(kind: str, cfg: Mapping[str, Any]) -> None:
    required, optional = _CHANNEL_KEYS[kind]
    for key in sorted(required):
        if cfg.get(key) in (None, ""):
            raise ValueError(f"notify channel config ({kind}): missing key {key!r}")
    # Rejecting unknown keys catches typos such as "api-key" that would
    # otherwise be silently ignored.
    unknown = sorted(set(cfg) - required - optional - {"kind"})
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        raise ValueError(f"notify channel config ({kind}): unknown key {names}")


def _as_number(cfg: Mapping[str, Any], key: str, convert: type) -> Any:
    try:
        return convert(cfg[key])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"notify channel config: key {key!r} is not a number: {cfg[key]!r}") from exc
