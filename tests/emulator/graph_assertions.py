"""Assertions shared by the Graph HTTP tests."""

from __future__ import annotations

from typing import Any

import httpx


def assert_graph_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Graph's error shape, with the request-id header matching the body; answers the error."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert {"date", "request-id", "client-request-id"} <= error["innerError"].keys()
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    return dict(error)
