"""Console operations: the programme, rewards, coupon look-up and the in-store till.

One router for ``app.py``; the pages live in ``routes_ops_programme`` (programme document
and rewards catalogue) and ``routes_ops_till`` (coupons and in-store redemption).
"""

from __future__ import annotations

from fastapi import APIRouter

from lealta.web.admin.routes_ops_programme import router as programme_router
from lealta.web.admin.routes_ops_till import router as till_router

router = APIRouter(include_in_schema=False)
router.include_router(programme_router)
router.include_router(till_router)
