"""The emulator's ASGI application: identity, Graph v1.0 and the control plane on one port."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import orjson

from mailtrawl.emulator import control, identity
from mailtrawl.emulator.errors import AadError, GraphError

# Importing the handler modules registers their routes on the shared router.
from mailtrawl.emulator.graph import batch, delta, directory, mail, outlook, subscriptions  # noqa: F401
from mailtrawl.emulator.graph.core import ConnectionReset, GraphRequest, dispatch, parse_query
from mailtrawl.emulator.runtime import EmulatorState

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_BODY = 160 * 1024 * 1024
log = logging.getLogger("mailtrawl.emulator")


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> None:
    raw_headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        raw_headers.append((b"content-type", content_type.encode()))
    for key, value in (headers or {}).items():
        raw_headers.append((key.lower().encode(), value.encode("latin-1", "replace")))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _json(body: Any) -> bytes:
    return orjson.dumps(body)


def create_app(state: EmulatorState) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI callable serving everything the emulator offers, from `state`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _read_body(receive)
        if body is None:
            await _respond(
                send,
                413,
                b'{"error":{"code":"RequestEntityTooLarge","message":"Request too large."}}',
                "application/json",
            )
            return
        host = headers.get("host") or f"{scope['server'][0]}:{scope['server'][1]}"
        base_url = f"{scope['scheme']}://{host}"
        path: str = scope["path"]
        method: str = scope["method"]
        query_string = scope.get("query_string", b"").decode("latin-1")
        low = path.lower()

        if low.startswith("/v1.0"):
            await _graph(scope, send, method, path, query_string, headers, body, base_url)
        elif low.startswith("/_emulator/"):
            if not control.authorized(state, headers.get("authorization")):
                await _respond(
                    send, 401, _json({"error": "control token required"}), "application/json"
                )
                return
            try:
                status, payload = control.handle(state, method, path, query_string, headers, body)
            except control.ControlError as exc:
                status, payload = exc.status, {"error": exc.message}
            await _respond(send, status, _json(payload), "application/json")
        else:
            await _identity(send, method, path, headers, body, base_url)

    async def _graph(
        scope: Scope,
        send: Send,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        body: bytes,
        base_url: str,
    ) -> None:
        request = GraphRequest(
            method=method,
            path=path,
            query={},
            headers=headers,
            body=body,
            base_url=base_url,
            client_request_id=headers.get("client-request-id", ""),
        )
        # Without a client-request-id of its own, Graph echoes its request-id in that place.
        request.client_request_id = request.client_request_id or request.request_id
        try:
            request.query = parse_query(query_string)
            response = await dispatch(request, state)
        except GraphError as err:  # the query string did not parse: no route was reached
            await _respond(
                send,
                err.status,
                _json(err.body(request.request_id, request.client_request_id)),
                "application/json",
                {
                    **err.headers,
                    "request-id": request.request_id,
                    "client-request-id": request.client_request_id,
                },
            )
            return
        except ConnectionReset:
            reset = scope.get("extensions", {}).get("mailtrawl.reset")
            if reset is not None:
                reset()
                return
            await _respond(send, 503, b"", "", {"Connection": "close"})
            return
        await _respond(
            send,
            response.status,
            response.encode(),
            response.content_type if response.status != 204 else "",
            response.headers,
        )

    async def _identity(
        send: Send, method: str, path: str, headers: dict[str, str], body: bytes, base_url: str
    ) -> None:
        parts = [unquote(p) for p in path.split("/") if p]
        try:
            if (
                method == "GET"
                and parts[-3:] == ["v2.0", ".well-known", "openid-configuration"]
                and len(parts) == 4
            ):
                if parts[0].lower() in ("common", "organizations"):
                    payload = identity.openid_configuration(state, base_url, state.tenant.id)
                    payload = {
                        k: (v.replace(state.tenant.id, parts[0]) if isinstance(v, str) else v)
                        for k, v in payload.items()
                    }
                else:
                    payload = identity.openid_configuration(state, base_url, parts[0])
                await _respond(send, 200, _json(payload), "application/json; charset=utf-8")
            elif method == "GET" and parts == ["common", "discovery", "instance"]:
                await _respond(
                    send,
                    200,
                    _json(identity.instance_discovery(base_url)),
                    "application/json; charset=utf-8",
                )
            elif method == "GET" and len(parts) == 4 and parts[1:] == ["discovery", "v2.0", "keys"]:
                identity.resolve_tenant(state, parts[0])
                await _respond(
                    send, 200, _json(identity.jwks(state)), "application/json; charset=utf-8"
                )
            elif len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                if method != "POST":
                    raise AadError(
                        400,
                        "invalid_request",
                        900561,
                        "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
                    )
                token = identity.issue_token(state, parts[0], body, headers.get("authorization"))
                await _respond(
                    send,
                    200,
                    _json(token),
                    "application/json; charset=utf-8",
                    {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
                )
            else:
                await _respond(
                    send,
                    404,
                    _json({"error": "not_found", "error_description": f"No endpoint {path}"}),
                    "application/json",
                )
        except AadError as err:
            await _respond(send, err.status, _json(err.body()), "application/json; charset=utf-8")

    return app
