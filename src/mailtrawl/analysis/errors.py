"""Errors `parse_report` raises: only for a report too large to read or in an unsupported form.

Every other problem with a report (broken MIME, bad encodings, hostile structure) becomes a
warning on the parsed report, never an exception.
"""

from __future__ import annotations

from mailtrawl.errors import MailtrawlError


class ReportParseError(MailtrawlError):
    """The report is in a form this installation cannot read (e.g. .msg without the extra)."""

    default_message = "The reported message could not be read; send it as an .eml file."


class ReportTooLarge(ReportParseError):
    """The report is larger than the configured bound."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        super().__init__(
            f"The reported message is {size} bytes, more than the {max_bytes} allowed; "
            "raise the limit (max_bytes) or analyse the message's attachments separately."
        )
