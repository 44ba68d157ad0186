"""Surveys and NPS (seed 001): surveys defined as data, answered once per member in the cockpit
or on a signed public page, points on completion, summaries per period and per tier."""
