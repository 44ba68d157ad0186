"""Segments: member groups defined by conditions compiled to SQL, or uploaded lists."""
