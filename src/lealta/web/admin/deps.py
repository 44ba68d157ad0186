"""Dependencies for console routes: the database session's owner and the signed-in staff."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lealta.kit.db import Database
from lealta.kit.http import get_db
from lealta.staff.service import Staff
from lealta.web.admin import auth


def get_staff(request: Request, db: Annotated[Database, Depends(get_db)]) -> Staff:
    """The signed-in console user; redirects to the sign-in page when there is none."""
    with db.unit_of_work(write=False) as session:
        return auth.current(session, request)


StaffDep = Annotated[Staff, Depends(get_staff)]
