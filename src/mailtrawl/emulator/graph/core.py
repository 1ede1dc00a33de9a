"""Request parsing, routing, permissions, throttling and fault injection for the Graph subset.

One dispatcher serves both plain HTTP requests and the sub-requests of `$batch`, so every
rule (roles, mailbox limits, faults, statistics) applies to both in the same way.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import orjson

from mailtrawl.emulator.errors import GraphError, access_denied, directory_denied
from mailtrawl.emulator.runtime import EmulatorState
from mailtrawl.emulator.state import Mailbox, User

JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

# Application permissions that satisfy each kind of access, least privileged first.
MAIL_READ_BASIC = frozenset({"Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite"})
MAIL_READ = frozenset({"Mail.Read", "Mail.ReadWrite"})
MAIL_WRITE = frozenset({"Mail.ReadWrite"})
SETTINGS_READ = frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"})
SETTINGS_WRITE = frozenset({"MailboxSettings.ReadWrite"})
USERS_READ = frozenset(
    {
        "User.ReadBasic.All",
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
GROUPS_READ = frozenset(
    {
        "GroupMember.Read.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
MEMBER_OF_READ = frozenset({"Directory.Read.All", "Directory.ReadWrite.All"})

_QUERY_OPTIONS = frozenset(
    {
        "select",
        "filter",
        "orderby",
        "top",
        "skip",
        "skiptoken",
        "search",
        "count",
        "expand",
        "deltatoken",
        "format",
    }
)


@dataclass
class GraphRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base_url: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_request_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    app_id: str = ""
    roles: frozenset[str] = frozenset()
    user: User | None = None
    mailbox: Mailbox | None = None
    in_batch: bool = False
    # For statistics: the matched route ("GET /users/{user}/messages") and the mailbox's UPN.
    label: str = ""
    mailbox_key: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        if not self.body:
            raise GraphError(400, "RequestBodyRead", "A request body is required.")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise GraphError(400, "RequestBodyRead", f"Invalid JSON. {exc}") from exc

    # The Prefer header: outlook.body-content-type, IdType, odata.maxpagesize.
    def prefer(self, name: str) -> str | None:
        raw = self.header("prefer")
        if not raw:
            return None
        for part in raw.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == name.lower():
                return value.strip().strip('"')
        return None

    @property
    def immutable_ids(self) -> bool:
        return (self.prefer("IdType") or "").lower() == "immutableid"

    @property
    def prefer_text_body(self) -> bool:
        return (self.prefer("outlook.body-content-type") or "").lower() == "text"

    def url(self, path: str, query: dict[str, str]) -> str:
        """An absolute URL on this server (nextLinks are followed opaquely by clients).

        Spaces are percent-encoded: a raw space makes an invalid URL that some HTTP clients
        (Python's http.client among them) refuse to send.
        """
        encoded = urlencode(query, safe="$'(),:/", quote_via=quote)
        quoted = quote(path.lstrip("/"), safe="/@:$'(),=!*+;~")  # e.g. guests' '#EXT#'
        return f"{self.base_url}/v1.0/{quoted}" + (f"?{encoded}" if encoded else "")


@dataclass
class GraphResponse:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = JSON_TYPE

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return orjson.dumps(self.body)


Handler = Callable[[GraphRequest, EmulatorState], "GraphResponse | Awaitable[GraphResponse]"]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    handler: Handler
    roles: frozenset[str]
    # "mail": Outlook endpoint on /users/{user}/…: mailbox resolution, access policy, limits.
    # "directory": users/groups endpoints (directory errors). "batch": the $batch envelope.
    kind: str
    label: str


class Router:
    def __init__(self) -> None:
        self._by_length: dict[int, list[Route]] = {}

    def add(
        self, method: str, pattern: str, roles: frozenset[str], kind: str
    ) -> Callable[[Handler], Handler]:
        written = pattern.strip("/")
        segments = tuple(s if s.startswith("{") else s.lower() for s in written.split("/"))

        def register(handler: Handler) -> Handler:
            route = Route(method, segments, handler, roles, kind, f"{method} /{written}")
            self._by_length.setdefault(len(segments), []).append(route)
            return handler

        return register

    def match(self, method: str, segments: list[str]) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, whether the path exists for another method)."""
        lowered = [s.lower() for s in segments]
        path_exists = False
        for route in self._by_length.get(len(segments), ()):
            params: dict[str, str] = {}
            for pat, seg, low in zip(route.pattern, segments, lowered, strict=True):
                if pat[0] == "{":
                    params[pat[1:-1]] = seg
                elif pat != low:
                    break
            else:
                if route.method == method:
                    return route, params, True
                path_exists = True
        return None, {}, path_exists


ROUTER = Router()


def parse_query(raw: str) -> dict[str, str]:
    """Query options, keys normalised to `$name` (Graph v1.0 also accepts them without `$`)."""
    from urllib.parse import parse_qsl

    out: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        bare = key[1:] if key.startswith("$") else key
        if bare.lower() in _QUERY_OPTIONS:
            key = "$" + bare.lower()
        if key in out:
            raise GraphError(
                400,
                "BadRequest",
                f"Query option '{key}' was specified more than once, but it must be specified at most once.",
            )
        out[key] = value
    return out


def _authenticate(request: GraphRequest, state: EmulatorState) -> None:
    auth = request.header("authorization") or ""
    challenge = {
        "WWW-Authenticate": (
            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
            'client_id="00000003-0000-0000-c000-000000000000"'
        )
    }
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        raise GraphError(
            401, "InvalidAuthenticationToken", "Access token is empty.", headers=challenge
        )
    token = auth[7:].strip()
    claims = state.token_cache.get(token)
    if claims is None:
        try:
            claims = jwt.decode(
                token,
                state.signing_key.public_key(),
                algorithms=["RS256"],
                audience=["https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError as exc:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
                headers=challenge,
            ) from exc
        except jwt.PyJWTError as exc:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.)."
                if token.count(".") != 2
                else "Access token validation failure.",
                headers=challenge,
            ) from exc
        if claims.get("tid") != state.tenant.id:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
                headers=challenge,
            )
        if len(state.token_cache) > 10_000:
            state.token_cache.clear()
        state.token_cache[token] = claims
    now = state.epoch()
    if (
        claims["exp"] <= now
        or claims["nbf"] > now + 300
        or str(claims.get("aio", "")).split(".", 1)[0] != str(state.token_generation)
    ):
        raise GraphError(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
            headers=challenge,
        )
    app = state.tenant.apps.get(claims.get("appid", ""))
    if app is None:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure.", headers=challenge
        )
    request.app_id = app.client_id
    # Roles are those in the token; permissions changed after issue apply to the next token.
    request.roles = frozenset(claims.get("roles", ()))


def resolve_user_for_mail(request: GraphRequest, state: EmulatorState, user_ref: str) -> User:
    user = state.tenant.user(user_ref)
    if user is None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid.")
    if not state.app_may_access(request.app_id, user):
        raise GraphError(
            403,
            "ErrorAccessDenied",
            "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
        )
    if not user.has_mailbox:
        raise GraphError(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        )
    return user


def throttled(retry_after: float, message: str, code: str = "ApplicationThrottled") -> GraphError:
    shown = str(int(retry_after)) if float(retry_after).is_integer() else f"{retry_after:.3f}"
    return GraphError(429, code, message, headers={"Retry-After": shown})


class ConnectionReset(Exception):
    """Raised to make the server drop the connection without an answer."""


_ME = re.compile(r"^/?v1\.0/me(/|$)", re.IGNORECASE)


async def dispatch(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    """Serve one Graph request (top-level or inside a batch) and record statistics."""
    stats = state.stats
    stats.total += 1
    stats.in_flight += 1
    stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
    try:
        response = await _dispatch(request, state)
    except GraphError as err:
        response = GraphResponse(
            err.status, err.body(request.request_id, request.client_request_id), dict(err.headers)
        )
    finally:
        stats.in_flight -= 1
    stats.by_endpoint[request.label or f"{request.method} (unknown path)"] += 1
    stats.by_status[response.status] += 1
    if request.mailbox_key:
        stats.by_mailbox[request.mailbox_key] += 1
    if request.app_id:
        stats.by_app[request.app_id] += 1
    if response.status == 429:
        stats.throttled += 1
    response.headers.setdefault("request-id", request.request_id)
    response.headers.setdefault("client-request-id", request.client_request_id)
    response.headers.setdefault(
        "x-ms-ags-diagnostic",
        '{"ServerInfo":{"DataCenter":"Local","Slice":"E","Ring":"0","ScaleUnit":"000","RoleInstance":"EMULATOR"}}',
    )
    return response


async def _dispatch(request: GraphRequest, state: EmulatorState) -> GraphResponse:
    path = request.path
    if not path.lower().startswith("/v1.0/") and path.lower() != "/v1.0":
        raise GraphError(400, "BadRequest", "Invalid version.")
    segments = [s for s in path[len("/v1.0/") :].split("/") if s]
    if _ME.match(path[1:] if path.startswith("/") else path):
        _authenticate(request, state)
        raise GraphError(
            400, "BadRequest", "/me request is only valid with delegated authentication flow."
        )
    route, params, path_exists = ROUTER.match(request.method, segments)
    if route is None:
        if path_exists:
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        first = segments[-1] if segments else ""
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{first}'.")
    request.params = params
    request.label = route.label
    _authenticate(request, state)
    retry = state.throttle.app_rate(request.app_id)
    if retry is not None:
        raise throttled(retry, "Application is over its request rate limit.")
    if route.roles and not (request.roles & route.roles):
        raise access_denied() if route.kind == "mail" else directory_denied()
    if route.kind != "mail":
        # A batch envelope is not failed as a whole: its sub-requests draw faults one by one.
        await _inject(request, state, failures=route.kind != "batch")
        return _drop_answer(request, state, await _call(route, request, state))
    request.mailbox_key = params["user"].lower()
    user = resolve_user_for_mail(request, state, params["user"])
    request.user = user
    request.mailbox_key = user.user_principal_name
    refused, reason = state.throttle.acquire(request.app_id, user.id)
    if refused is not None:
        message = (
            "Application is over its MailboxConcurrency limit."
            if reason == "MailboxConcurrency"
            else "Application is over its IncomingRequests limit."
        )
        raise throttled(refused, message)
    try:
        inflight = state.throttle.inflight.get((request.app_id, user.id), 0)
        state.stats.peak_mailbox_in_flight = max(state.stats.peak_mailbox_in_flight, inflight)
        await _inject(request, state)
        request.mailbox = state.mailbox(user)
        return _drop_answer(request, state, await _call(route, request, state))
    finally:
        state.throttle.release(request.app_id, user.id)


async def _call(route: Route, request: GraphRequest, state: EmulatorState) -> GraphResponse:
    result = route.handler(request, state)
    if isinstance(result, GraphResponse):
        return result
    return await result


async def _inject(request: GraphRequest, state: EmulatorState, *, failures: bool = True) -> None:
    """Latency, then (by chance) a fault, as configured."""
    faults = state.settings.faults
    if faults.latency_ms or faults.jitter_ms:
        await asyncio.sleep((faults.latency_ms + state.rng.uniform(0, faults.jitter_ms)) / 1000)
    if not failures or not faults.any_failure:
        return
    roll = state.rng.random()
    edge = faults.rate_429
    if roll < edge:
        state.stats.injected_faults["429"] += 1
        state.stats.injected_faults_by_app[request.app_id] += 1
        raise throttled(faults.retry_after, "Please retry again later.", code="TooManyRequests")
    edge += faults.rate_503
    if roll < edge:
        state.stats.injected_faults["503"] += 1
        state.stats.injected_faults_by_app[request.app_id] += 1
        shown = (
            str(int(faults.retry_after))
            if float(faults.retry_after).is_integer()
            else str(faults.retry_after)
        )
        raise GraphError(
            503, "serviceNotAvailable", "Service Unavailable", headers={"Retry-After": shown}
        )
    edge += faults.rate_504
    if roll < edge:
        state.stats.injected_faults["504"] += 1
        state.stats.injected_faults_by_app[request.app_id] += 1
        raise GraphError(504, "UnknownError", "Gateway Timeout")
    edge += faults.rate_reset
    if roll < edge and not request.in_batch:
        state.stats.injected_faults["reset"] += 1
        state.stats.injected_faults_by_app[request.app_id] += 1
        raise ConnectionReset


def _drop_answer(
    request: GraphRequest, state: EmulatorState, answer: GraphResponse
) -> GraphResponse:
    """By chance (`rate_reset_after`), lose the answer of a request that was carried out."""
    rate = state.settings.faults.rate_reset_after
    if rate and not request.in_batch and state.rng.random() < rate:
        state.stats.injected_faults["reset_after"] += 1
        state.stats.injected_faults_by_app[request.app_id] += 1
        raise ConnectionReset
    return answer


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> GraphResponse:
    return GraphResponse(status, body, headers or {})


def no_content() -> GraphResponse:
    return GraphResponse(204, None, {}, content_type="")


def parse_top(request: GraphRequest, *, default: int, maximum: int, directory: bool) -> int:
    raw = request.query.get("$top")
    if raw is None:
        return default
    try:
        top = int(raw)
    except ValueError:
        raise GraphError(
            400, "BadRequest", f"Invalid value '{raw}' for query option '$top'."
        ) from None
    if not 1 <= top <= maximum:
        code = "Request_BadRequest" if directory else "ErrorInvalidArgument"
        raise GraphError(
            400,
            code,
            f"Invalid page size specified: '{top}'. Must be between 1 and {maximum} inclusive.",
        )
    return top


def refuse_unmodelled(request: GraphRequest, *modelled: str) -> None:
    """501 for a query option the emulator does not evaluate on this request.

    Ignoring a `$filter`, `$orderby` or `$expand` silently would hand a client results that
    look right and are not; an explicit 501 shows the gap at once.
    """
    for key in request.query:
        if key.startswith("$") and key[1:] in _QUERY_OPTIONS and key not in modelled:
            raise GraphError(
                501,
                "NotImplemented",
                f"The emulator does not evaluate the query option '{key}' on this request.",
            )


def parse_select(request: GraphRequest) -> list[str] | None:
    raw = request.query.get("$select")
    if raw is None:
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]
