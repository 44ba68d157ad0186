"""Audit log of every manual or administrative action."""
