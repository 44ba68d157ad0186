"""Reporting: read-only figures and searches behind the console (KPIs, overview, audit log)."""
