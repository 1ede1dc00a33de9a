"""The built-in offline engines and a registry through which other engines join an analysis.

`default_engines()` gives the built-in offline engines. Other packages (threat-intel lists,
YARA, online services) register a factory with `register_engine(name, factory)`; the factory
receives the application's settings and returns an engine, or None when it is not configured.
`available_engines(settings)` gives the built-in engines plus every registered one that is
configured, in registration order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailtrawl.analysis.engines.attachments import AttachmentRiskEngine
from mailtrawl.analysis.engines.lookalike import LookalikeDomainEngine
from mailtrawl.analysis.engines.sender import SenderAuthenticationEngine
from mailtrawl.analysis.engines.simulation import DEFAULT_SIMULATION_HEADERS, SimulationEngine
from mailtrawl.analysis.engines.urls import UrlHeuristicsEngine
from mailtrawl.analysis.model import Engine

EngineFactory = Callable[[Any], Engine | None]

_REGISTRY: dict[str, EngineFactory] = {}

__all__ = [
    "DEFAULT_SIMULATION_HEADERS",
    "AttachmentRiskEngine",
    "EngineFactory",
    "LookalikeDomainEngine",
    "SenderAuthenticationEngine",
    "SimulationEngine",
    "UrlHeuristicsEngine",
    "available_engines",
    "default_engines",
    "register_engine",
    "registered_engines",
    "unregister_engine",
]


def default_engines() -> list[Engine]:
    """The built-in offline engines, new instances each call."""
    return [
        SimulationEngine(),
        SenderAuthenticationEngine(),
        LookalikeDomainEngine(),
        UrlHeuristicsEngine(),
        AttachmentRiskEngine(),
    ]


def register_engine(name: str, factory: EngineFactory) -> None:
    """Add (or replace) the engine factory called `name`; `factory(settings)` returns an engine
    or None when the engine is not configured (no list loaded, no API key)."""
    _REGISTRY[name] = factory


def unregister_engine(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_engines() -> dict[str, EngineFactory]:
    """The registered factories by name (a copy)."""
    return dict(_REGISTRY)


def available_engines(settings: Any = None, *, online: bool = True) -> list[Engine]:
    """The built-in engines and every configured registered one; online ones only if asked."""
    engines = default_engines()
    for factory in _REGISTRY.values():
        engine = factory(settings)
        if engine is not None and (online or not engine.online):
            engines.append(engine)
    return engines
