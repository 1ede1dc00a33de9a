"""Revisions, named `v<rev>_<slug>.py` with four-digit revision ids ("0001", "0002", ...)."""
