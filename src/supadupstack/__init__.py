"""supadupstack: deep stacks and mosaics from smart-telescope frames (Seestar first)."""

__version__ = "0.1.0"
