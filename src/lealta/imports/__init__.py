"""Bulk import of historical data (CSV) through the same ingestion path as the API."""

from lealta.imports.service import ImportReport, RejectedRow, import_orders

__all__ = ["ImportReport", "RejectedRow", "import_orders"]
