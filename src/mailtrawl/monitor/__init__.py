"""Continuous investigations: delta cursors, scheduling and Graph change notifications."""
