"""Member pictures: checked by their magic bytes, stored under random names in the data dir."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from lealta.kit.errors import InvalidInput, NotFound
from lealta.models import Member

AVATAR_NAME = re.compile(r"^[0-9a-f]{32}\.(png|jpg|webp)$")
AVATAR_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


class BadPicture(InvalidInput):
    code = "invalid_picture"


def picture_kind(data: bytes) -> str | None:
    """``png``, ``jpg`` or ``webp`` from the file's first bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def avatar_dir(data_dir: Path) -> Path:
    return data_dir / "avatars"


def save_avatar(data: bytes, *, data_dir: Path, max_bytes: int) -> str:
    """Check and store an uploaded picture under a random name; returns the name.

    Only PNG, JPEG and WebP, recognised by their magic bytes (the declared type and file
    name are the client's word and are ignored), up to ``max_bytes``.
    """
    if not data:
        raise BadPicture("Choose a picture to upload.", code="picture_missing")
    if len(data) > max_bytes:
        raise BadPicture(
            f"The picture is larger than {max_bytes} bytes.",
            code="picture_too_large",
            details={"max_bytes": max_bytes},
        )
    kind = picture_kind(data)
    if kind is None:
        raise BadPicture("Only PNG, JPEG or WebP pictures are accepted.", code="picture_type")
    folder = avatar_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{kind}"
    (folder / name).write_bytes(data)
    return name


def avatar_file(member: Member, *, data_dir: Path) -> tuple[Path, str]:
    """The member's stored picture and its media type, or ``404 no_picture``."""
    name = member.avatar_path
    if not name or not AVATAR_NAME.match(name):
        raise NotFound("No picture.", code="no_picture")
    path = avatar_dir(data_dir) / name
    if not path.is_file():
        raise NotFound("No picture.", code="no_picture")
    return path, AVATAR_TYPES[name.rsplit(".", 1)[1]]


def remove_avatar_file(name: str | None, *, data_dir: Path) -> None:
    """Delete a replaced picture (best effort: a leftover file is harmless)."""
    if name and AVATAR_NAME.match(name):
        (avatar_dir(data_dir) / name).unlink(missing_ok=True)
