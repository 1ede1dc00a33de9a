"""Reported-email analysis: parse hostile mail, run engines, reach a verdict with evidence."""
