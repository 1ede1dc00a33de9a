"""JSON batching (`POST /v1.0/$batch`): up to 20 sub-requests, `dependsOn`, per-request status."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import urlsplit

import orjson

from mailtrawl.emulator.errors import GraphError
from mailtrawl.emulator.graph.core import (
    ROUTER,
    GraphRequest,
    GraphResponse,
    dispatch,
    ok,
    parse_query,
)
from mailtrawl.emulator.runtime import EmulatorState

MAX_REQUESTS = 20
# Outlook runs at most four sub-requests of one batch at a time.
PARALLELISM = 4
_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})


def _invalid(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _validate(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise _invalid("Invalid batch payload format.")
    requests = payload["requests"]
    if not requests:
        raise _invalid("Invalid batch payload format.")
    if len(requests) > MAX_REQUESTS:
        raise _invalid(f"The number of batch requests exceeds the limit of {MAX_REQUESTS}.")
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict):
            raise _invalid("Invalid batch payload format.")
        rid, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(rid, str) or not rid:
            raise _invalid("Invalid batch payload format. Each request needs a string 'id'.")
        if rid.lower() in seen:
            raise _invalid(f"Batch request contains duplicate request id '{rid}'.")
        seen.add(rid.lower())
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise _invalid(f"Invalid method in request '{rid}'.")
        if not isinstance(url, str) or not url or urlsplit(url).scheme:
            raise _invalid(f"Invalid url in request '{rid}': a relative URL is required.")
        target = url.partition("?")[0].strip("/").lower()
        if target in ("$batch", "v1.0/$batch"):
            raise _invalid(f"Request '{rid}': nested batch requests are not supported.")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise _invalid(f"Invalid headers in request '{rid}'.")
        if (
            "body" in item
            and item["body"] is not None
            and not any(k.lower() == "content-type" for k in headers)
        ):
            raise _invalid(
                f"Content-Type header is required for request '{rid}', which has a body."
            )
        depends = item.get("dependsOn")
        if depends is not None and (
            not isinstance(depends, list) or not all(isinstance(d, str) for d in depends)
        ):
            raise _invalid(f"Invalid dependsOn in request '{rid}'.")
        for dep in depends or ():
            if dep.lower() not in seen or dep.lower() == rid.lower():
                raise _invalid(
                    f"Request '{rid}' depends on '{dep}', which is not an earlier request in the batch."
                )
    return list(requests)


def _sub_request(outer: GraphRequest, item: dict[str, Any]) -> GraphRequest:
    url: str = item["url"]
    path, _, query = url.partition("?")
    path = "/" + path.lstrip("/")
    if not path.lower().startswith("/v1.0/"):
        path = "/v1.0" + path
    headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
    headers["authorization"] = outer.header("authorization") or ""
    body = item.get("body")
    raw: bytes
    if body is None:
        raw = b""
    elif isinstance(body, str) and not headers.get("content-type", "").startswith(
        "application/json"
    ):
        raw = body.encode()
    else:
        raw = orjson.dumps(body)
    request = GraphRequest(
        method=item["method"].upper(),
        path=path,
        query=parse_query(query),
        headers=headers,
        body=raw,
        base_url=outer.base_url,
        client_request_id=headers.get("client-request-id", outer.client_request_id),
        in_batch=True,
    )
    return request


def _render(rid: str, response: GraphResponse) -> dict[str, Any]:
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() in ("retry-after", "location", "preference-applied")
    }
    entry: dict[str, Any] = {"id": rid, "status": response.status, "headers": headers}
    if response.content_type:
        headers["Content-Type"] = response.content_type
    if response.raw is not None:
        entry["body"] = base64.b64encode(response.raw).decode()
    elif response.body is not None:
        entry["body"] = response.body
    return entry


def _failed_dependency(rid: str) -> dict[str, Any]:
    return {
        "id": rid,
        "status": 424,
        "headers": {"Content-Type": "application/json"},
        "body": {
            "error": {"code": "FailedDependency", "message": "The request has a failed dependency."}
        },
    }


@ROUTER.add("POST", "$batch", frozenset(), "batch")
async def run_batch(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    items = _validate(request.json())
    state.stats.batches += 1
    state.stats.batch_subrequests += len(items)
    sequential = any(item.get("dependsOn") for item in items)
    results: dict[str, dict[str, Any]] = {}
    status_of: dict[str, int] = {}

    async def run(item: dict[str, Any]) -> None:
        try:
            response = await dispatch(_sub_request(request, item), state)
        except GraphError as err:  # the sub-request's own query string did not parse
            response = GraphResponse(
                err.status,
                err.body(request.request_id, request.client_request_id),
                dict(err.headers),
            )
        results[item["id"]] = _render(item["id"], response)

    if sequential:
        for item in items:
            failed = [
                d for d in item.get("dependsOn") or () if status_of.get(d.lower(), 424) >= 400
            ]
            if failed:
                results[item["id"]] = _failed_dependency(item["id"])
            else:
                await run(item)
            # Ids are unique case-insensitively, so dependsOn matches them that way too.
            status_of[item["id"].lower()] = results[item["id"]]["status"]
    else:
        gate = asyncio.Semaphore(PARALLELISM)

        async def gated(item: dict[str, Any]) -> None:
            async with gate:
                await run(item)

        await asyncio.gather(*(gated(item) for item in items))
    return ok({"responses": [results[item["id"]] for item in items]})
