"""Keep secrets out of request logs.

A member's sign-in link carries its token in the path (``/me/login/<token>``) and other
secrets may come as query parameters (``?token=``, ``?api_key=``). Every request log line, ours
(:class:`lealta.kit.http.ObservabilityMiddleware`) and uvicorn's access log, shows the target
through :func:`redact_target`, which replaces those values with ``[redacted]``.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

# /me/login/<token> (also percent-encoded, as in ``?next=%2Fme%2Flogin%2F...``), but not the
# fixed page /me/login/sent.
_LOGIN_TOKEN = re.compile(
    r"(?P<keep>(?:/|%2F)me(?:/|%2F)login(?:/|%2F))(?!sent(?:[/?&#%]|$))[^/?&#%\s]+",
    re.IGNORECASE,
)
# Query parameters whose name says they carry a secret.
_SECRET_PARAM = re.compile(
    r"(?P<keep>(?:^|[?&;])[^=&;#]*(?:token|secret|password|passwd|api[_-]?key|apikey|signature)"
    r"[^=&;#]*=)[^&;#]*",
    re.IGNORECASE,
)


def redact_target(target: str) -> str:
    """``target`` (a path, optionally with its query string) with secrets replaced."""
    path, sep, query = target.partition("?")
    path = _LOGIN_TOKEN.sub(lambda m: m.group("keep") + REDACTED, path)
    if sep:
        query = _SECRET_PARAM.sub(lambda m: m.group("keep") + REDACTED, query)
        query = _LOGIN_TOKEN.sub(lambda m: m.group("keep") + REDACTED, query)
    return path + sep + query


class RedactAccessLog(logging.Filter):
    """Redact the request target of uvicorn's access log records (``uvicorn.access``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' with (client, method, target, version, status).
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


def install_access_log_filter() -> None:
    """Add :class:`RedactAccessLog` to uvicorn's access logger (once)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessLog) for f in logger.filters):
        logger.addFilter(RedactAccessLog())
