"""Providers by name: a new mail platform is a new package and one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailtrawl.providers.base import Capabilities, Provider

ProviderFactory = Callable[[Any], Provider]


def _m365(settings: Any) -> Provider:
    # Imported on use: the registry stays cheap to import and free of Graph code.
    from mailtrawl.providers.graph.provider import GraphProvider, GraphSettings

    if not isinstance(settings, GraphSettings):
        raise TypeError("the m365 provider needs GraphSettings")
    return GraphProvider(settings)


_FACTORIES: dict[str, ProviderFactory] = {"m365": _m365}

# What each provider can do, known without connecting (plans and explains are made offline).
_CAPABILITIES: dict[str, Capabilities] = {
    "m365": Capabilities(
        server_side_search=True,
        server_side_filter=True,
        search_result_cap=1000,
        delta=True,
        batch=True,
        immutable_ids=True,
        purge=True,
        soft_delete=True,
        categories=True,
        create_message=True,
        mime=True,
        max_concurrency_per_mailbox=4,
        max_page_size=1000,
        notifications=True,
    )
}


def register(name: str, factory: ProviderFactory, capabilities: Capabilities) -> None:
    """Add a provider factory (taking that provider's settings object)."""
    if name in _FACTORIES:
        raise ValueError(f"a provider named '{name}' is already registered")
    _FACTORIES[name] = factory
    _CAPABILITIES[name] = capabilities


def capabilities(name: str) -> Capabilities:
    """What provider `name` can do in general (an instance may report less, e.g. per cloud)."""
    try:
        return _CAPABILITIES[name]
    except KeyError:
        raise ValueError(
            f"unknown provider '{name}'; known providers: {', '.join(names())}"
        ) from None


def names() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, settings: Any) -> Provider:
    """A provider for `name` ("m365", ...) built from its settings; no I/O happens yet."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown provider '{name}'; known providers: {', '.join(names())}"
        ) from None
    return factory(settings)
