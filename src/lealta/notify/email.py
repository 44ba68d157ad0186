"""Send email through the configured SMTP server (stdlib ``smtplib``).

Without ``LEALTA_SMTP_HOST`` (the embedded default) messages are not sent but written to the
log, so a magic link can be followed from the server output.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from lealta.config import Settings
from lealta.kit.logging import get_logger

log = get_logger("lealta.email")


class EmailNotSent(Exception):
    pass


def send(settings: Settings, *, to: str, subject: str, text: str, html: str | None = None) -> bool:
    """Send one message; returns False when no SMTP server is configured (logged instead)."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    if not settings.smtp_host:
        log.info("email_not_sent_no_smtp", to=to, subject=subject, body=text)
        return False
    transmit(settings, message)
    return True


def transmit(settings: Settings, message: EmailMessage) -> None:
    """Hand one built message to the SMTP server; :class:`EmailNotSent` when it fails."""
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("email_failed", to=message["To"], subject=message["Subject"], error=str(exc))
        raise EmailNotSent(str(exc)) from exc
    log.info("email_sent", to=message["To"], subject=message["Subject"])
