"""The pure engine of the event spine and its two drivers' shared vocabulary.

``core.apply(programme, state, event, ctx) -> Outcome``: see :mod:`lealta.engine.core`.
"""
