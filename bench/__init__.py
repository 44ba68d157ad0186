"""Hot-path benchmarks for Lealta, each figure printed next to a baseline from the same run.

Run with ``make bench`` (``python -m bench``); see ``python -m bench --help``.
"""
