"""Member tokens: how a shop's own pages prove to Lealta which member is signed in.

A publishable key lives in a browser, so anybody can read it; what it may do must therefore
depend on a second proof that names the member. The cockpit session is one; a **member token**
is the other, for a shop whose pages are not Lealta's:

    token = hex(HMAC-SHA256(LEALTA_MEMBER_TOKEN_SECRET, external_id as UTF-8))

The shop's server computes it with the shared secret when it renders a page for a signed-in
customer and hands it to its scripts, which send it as ``X-Lealta-Member-Token`` beside the
``userId``. The token carries no expiry: it proves only "the shop vouches for this member",
and it lets that member's browser do nothing but ``track`` for itself. Rotate the secret to
invalidate every token at once.
"""

from __future__ import annotations

import hashlib
import hmac

TOKEN_HEADER = "X-Lealta-Member-Token"  # noqa: S105 - a header name, not a secret


def member_token(secret: str, external_id: str) -> str:
    """The token that proves ``external_id`` (see the module docstring)."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def token_matches(secret: str, external_id: str, token: str | None) -> bool:
    """Whether ``token`` proves ``external_id``; always False without a secret or a token.
    Compared in constant time."""
    if not secret or not token:
        return False
    return hmac.compare_digest(member_token(secret, external_id), token.strip().lower())
