"""Workflows: a trigger, conditions and steps that run the programme by itself."""
