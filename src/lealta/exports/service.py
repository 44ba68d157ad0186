"""Member export: one CSV row per member with the figures a CRM or spreadsheet needs.

Rows are streamed from the database (``yield_per``) into a temporary file beside the target,
which replaces the target only once complete, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from sqlalchemy import select

from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.money import from_minor
from lealta.models import Account, Member
from lealta.programme import service as programmes

MEMBER_COLUMNS = ("external_id", "tier", "available_points", "lifetime_points", "qualifying_spend")
_BATCH = 1000


class ExportFileError(LealtaError):
    code = "unwritable_file"


def export_members(db: Database, path: Path) -> int:
    """Write every member to ``path`` as CSV, ordered by external id; returns the row count.

    ``tier`` is empty until tiers exist; ``lifetime_points`` is the net lifetime earned
    (reversals deducted); ``qualifying_spend`` is a decimal in the programme's currency.
    Raises ``unwritable_file`` when the file cannot be written.
    """
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with db.unit_of_work(write=False) as session, partial.open("w", newline="") as out:
            currency = programmes.current(session).currency
            writer = csv.writer(out)
            writer.writerow(MEMBER_COLUMNS)
            rows = session.execute(
                select(
                    Member.external_id,
                    Account.points_available,
                    Account.lifetime_earned,
                    Account.qualifying_spend_minor,
                )
                .join(Account, Account.member_id == Member.id)
                .order_by(Member.external_id)
                .execution_options(yield_per=_BATCH)
            )
            for external_id, available, lifetime, spend_minor in rows:
                writer.writerow(
                    (
                        external_id,
                        "",
                        available,
                        lifetime,
                        format(from_minor(spend_minor, currency), "f"),
                    )
                )
                count += 1
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportFileError(
            f"Cannot write '{path}': {exc.strerror or exc}.", details={"path": str(path)}
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count
