"""The delivery channels, registered by kind: e-mail (SMTP), SMS and push (one generic HTTP
provider) and the in-app inbox.

A channel turns a rendered :class:`Outgoing` message into a :class:`Delivered` receipt, or
raises :class:`DeliveryFailed` (``permanent`` when retrying cannot help: a refused address, a
4xx answer). Calls to the outside world happen outside any database transaction; each carries
the message id, so a provider that deduplicates (the HTTP provider gets it as
``Idempotency-Key``; e-mail as a stable ``Message-ID``) shows a retried message once.
"""

from __future__ import annotations

import email.policy
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol

import httpx

from lealta.config import Settings
from lealta.notify import email as mailer

HTTP_TIMEOUT = 10.0
# Long header lines (List-Unsubscribe carries a signed URL) stay one unencoded line: a URL
# folded into RFC 2047 words is not clickable.
_POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message ready to go."""

    message_id: int
    channel: str
    recipient: str
    subject: str
    text: str
    html: str | None
    unsubscribe_url: str | None


@dataclass(frozen=True, slots=True)
class Delivered:
    provider_id: str | None


class DeliveryFailed(Exception):
    """The channel could not deliver; ``permanent`` failures are not retried."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    kind: str

    def configured(self, settings: Settings) -> bool:
        """Whether this process can deliver on this channel at all."""
        ...

    def deliver(self, settings: Settings, message: Outgoing) -> Delivered: ...


def message_id_header(settings: Settings, message_id: int) -> str:
    """A stable ``Message-ID`` per message: a resent copy is recognisable as the same."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "lealta.local"
    return f"<lealta-message-{message_id}@{domain}>"


class EmailChannel:
    """E-mail over SMTP: text and HTML parts, ``List-Unsubscribe`` with one-click
    (RFC 8058) ``List-Unsubscribe-Post`` and a stable ``Message-ID``."""

    kind = "email"

    def configured(self, settings: Settings) -> bool:
        return bool(settings.smtp_host)

    def build(self, settings: Settings, message: Outgoing) -> EmailMessage:
        mail = EmailMessage(policy=_POLICY)
        mail["From"] = settings.mail_from
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Message-ID"] = message_id_header(settings, message.message_id)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        if message.unsubscribe_url:
            mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def deliver(self, settings: Settings, message: Outgoing) -> Delivered:
        mail = self.build(settings, message)
        try:
            mailer.transmit(settings, mail)
        except mailer.EmailNotSent as exc:
            cause = exc.__cause__
            refused = isinstance(cause, smtplib.SMTPRecipientsRefused) or (
                isinstance(cause, smtplib.SMTPResponseException) and 500 <= cause.smtp_code < 600
            )
            raise DeliveryFailed(str(exc), permanent=refused) from exc
        return Delivered(provider_id=mail["Message-ID"])


class HttpChannel:
    """SMS or push through the generic HTTP provider: a JSON POST to
    ``LEALTA_NOTIFY_HTTP_URL`` with ``Authorization: Bearer <LEALTA_NOTIFY_HTTP_TOKEN>`` and
    ``Idempotency-Key: lealta-message-<id>``. The provider answers 2xx with an optional JSON
    ``{"id": ...}``; 4xx (but 408 and 429) is a permanent refusal, anything else is retried."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def configured(self, settings: Settings) -> bool:
        return bool(settings.notify_http_url)

    def deliver(self, settings: Settings, message: Outgoing) -> Delivered:
        headers = {"Idempotency-Key": f"lealta-message-{message.message_id}"}
        if settings.notify_http_token:
            headers["Authorization"] = f"Bearer {settings.notify_http_token}"
        body = {
            "id": f"lealta-message-{message.message_id}",
            "channel": self.kind,
            "to": message.recipient,
            "title": message.subject,
            "text": message.text,
        }
        try:
            answer = httpx.post(
                settings.notify_http_url, json=body, headers=headers, timeout=HTTP_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"provider unreachable: {exc}", permanent=False) from exc
        if answer.is_success:
            provider_id: str | None = None
            try:
                data = answer.json()
                if isinstance(data, dict) and data.get("id") is not None:
                    provider_id = str(data["id"])[:200]
            except ValueError:
                pass
            return Delivered(provider_id=provider_id)
        permanent = 400 <= answer.status_code < 500 and answer.status_code not in (408, 429)
        raise DeliveryFailed(
            f"provider answered {answer.status_code}: {answer.text[:500]}", permanent=permanent
        )


class InAppChannel:
    """The cockpit inbox: the message row is the delivery."""

    kind = "inapp"

    def configured(self, settings: Settings) -> bool:
        return True

    def deliver(self, settings: Settings, message: Outgoing) -> Delivered:
        return Delivered(provider_id=None)


REGISTRY: dict[str, Channel] = {
    c.kind: c for c in (EmailChannel(), HttpChannel("sms"), HttpChannel("push"), InAppChannel())
}


def get(kind: str) -> Channel:
    """The channel registered under ``kind``."""
    return REGISTRY[kind]
