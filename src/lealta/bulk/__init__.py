"""Bulk operations on many members, and imports from another loyalty system."""
