"""CSV exports, streamed from the database."""

from lealta.exports.service import MEMBER_COLUMNS, export_members

__all__ = ["MEMBER_COLUMNS", "export_members"]
