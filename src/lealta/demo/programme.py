"""The demo programme: seed 000's tiers for a Mediterranean fashion retailer, in euros.

The document itself is ``programme.yaml`` beside this module (``examples/demo-programme.yaml``
links to it): one definition that ``lealta demo up`` applies and the README documents.
"""

from __future__ import annotations

from importlib.resources import files

import yaml

from lealta.programme.schema import Programme

DEMO_PROGRAMME_TEXT = (files("lealta.demo") / "programme.yaml").read_text(encoding="utf-8")
DEMO_PROGRAMME = Programme.model_validate(yaml.safe_load(DEMO_PROGRAMME_TEXT))
