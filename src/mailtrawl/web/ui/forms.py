"""Reading the dashboard's forms: URL-encoded, bounded in size and field count.

Our forms carry no files, so the body is parsed here with the standard library (no multipart
parser needed); anything else is refused. The result is cached on the request, so the CSRF
check and the handler read the same fields.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, status
from starlette.datastructures import FormData, UploadFile

MAX_FORM_BYTES = 256 * 1024
MAX_FIELDS = 1000
URLENCODED = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> FormData:
    """The fields of a URL-encoded POST (415 for another type, 413 when too large)."""
    cached = getattr(request.state, "form_fields", None)
    if isinstance(cached, FormData):
        return cached
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = b""
    if request.method not in ("GET", "HEAD"):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "The form is too large.")
        try:
            body = await request.body()
        except RuntimeError:
            # `web.deps.caller` read the body as a form already (for its CSRF field):
            # Starlette kept the parsed form, not the bytes.
            parsed = await request.form()
            form = FormData(list(parsed.multi_items()))
            request.state.form_fields = form
            return form
    if body and media != URLENCODED:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Send the form as " + URLENCODED + "."
        )
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "The form is too large.")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The form could not be read.") from None
    fields: list[tuple[str, str | UploadFile]] = list(pairs)
    form = FormData(fields)
    request.state.form_fields = form
    return form


def field(form: FormData, name: str, *, max_length: int = 1000) -> str:
    """One text field, stripped of surrounding spaces and cut to `max_length` ("" if absent)."""
    value = form.get(name)
    return value.strip()[:max_length] if isinstance(value, str) else ""
