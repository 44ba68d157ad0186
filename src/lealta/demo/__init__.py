"""The demo: a sample programme and a year of made-up customers, loaded by ``lealta demo up``."""

from lealta.demo.programme import DEMO_PROGRAMME
from lealta.demo.service import DemoReport, up

__all__ = ["DEMO_PROGRAMME", "DemoReport", "up"]
