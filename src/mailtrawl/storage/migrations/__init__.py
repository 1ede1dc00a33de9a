"""Alembic migration environment, shipped as package data and run by `mailtrawl db upgrade`."""
