"""Microsoft 365 through Microsoft Graph: the only package that knows a Graph URL."""

from __future__ import annotations

from mailtrawl.providers.graph.provider import GraphProvider, GraphSettings

__all__ = ["GraphProvider", "GraphSettings"]
