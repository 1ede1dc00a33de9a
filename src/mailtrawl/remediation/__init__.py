"""Remediation: plan, approve, execute and verify actions on messages, and undo them."""
