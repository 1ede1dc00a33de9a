"""Sender authentication: SPF/DKIM/DMARC/compauth failures, spoofed internal senders and names,
and Reply-To / Return-Path pointing elsewhere than From."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence

from mailtrawl.analysis.domains import domain_of_address, edit_distance, is_freemail
from mailtrawl.analysis.engines.base import indicator, shorten
from mailtrawl.analysis.model import AnalysisContext, Indicator, ParsedReport, Verdict
from mailtrawl.matching.urls import host_in_domain

NAME = "sender"
_FAILED = frozenset({"fail", "hardfail", "permerror"})


class SenderAuthenticationEngine:
    """Authentication results and sender identity checks (offline)."""

    name = NAME
    online = False

    async def analyze(self, report: ParsedReport, context: AnalysisContext) -> Sequence[Indicator]:
        return list(sender_indicators(report, context))


def sender_indicators(report: ParsedReport, context: AnalysisContext) -> Iterator[Indicator]:
    """Every sender finding for `report`, in a stable order."""
    yield from _authentication(report)
    sender = report.sender.address
    sender_domain = domain_of_address(sender)
    internal = bool(sender_domain) and any(
        host_in_domain(sender_domain, own) for own in context.own_domains
    )
    auth = report.auth
    auth_failed = (
        auth.dmarc in _FAILED
        or auth.compauth in _FAILED
        or (auth.spf in _FAILED | {"softfail"} and auth.dkim != "pass")
    )
    if internal and auth_failed:
        yield indicator(
            NAME,
            "sender.own_domain_spoof",
            Verdict.PHISHING,
            75,
            f"From uses your own domain ({sender_domain}) but the message failed authentication "
            f"(spf={auth.spf}, dkim={auth.dkim}, dmarc={auth.dmarc}, compauth={auth.compauth})",
            sender,
        )
    if context.own_domains and sender_domain and not internal:
        colleague = _matching_colleague(report.sender.name, context.colleague_names)
        if colleague:
            yield indicator(
                NAME,
                "sender.display_name_spoof",
                Verdict.PHISHING,
                60,
                f"the display name {shorten(report.sender.name)!r} matches your colleague "
                f"{colleague!r} but the address {sender} is external",
                sender,
            )
    if "@" in report.sender.name:
        shown = report.sender.name.strip("<>\"' ").lower()
        if shown != sender and domain_of_address(shown) != sender_domain:
            yield indicator(
                NAME,
                "sender.display_name_address",
                Verdict.SUSPICIOUS,
                40,
                f"the display name shows the address {shorten(shown)!r}, but the message is from "
                f"{sender}",
                sender,
            )
    yield from _divergence(report, sender_domain)


def _authentication(report: ParsedReport) -> Iterator[Indicator]:
    auth = report.auth
    if auth.dmarc in _FAILED:
        yield indicator(
            NAME,
            "auth.dmarc_fail",
            Verdict.SUSPICIOUS,
            40,
            "DMARC failed: the From domain did not authorise this sender "
            f"(Authentication-Results dmarc={auth.dmarc})",
            domain_of_address(report.sender.address) or None,
        )
    if auth.compauth in _FAILED:
        reason = f" reason={auth.compauth_reason}" if auth.compauth_reason else ""
        yield indicator(
            NAME,
            "auth.compauth_fail",
            Verdict.SUSPICIOUS,
            40,
            f"Microsoft composite authentication failed (compauth={auth.compauth}{reason})",
        )
    elif auth.compauth == "softfail":
        yield indicator(
            NAME,
            "auth.compauth_softfail",
            Verdict.UNDETECTED,
            15,
            "Microsoft composite authentication soft-failed (compauth=softfail)",
        )
    if auth.spf in _FAILED:
        yield indicator(
            NAME,
            "auth.spf_fail",
            Verdict.SUSPICIOUS,
            25,
            f"SPF failed: the sending server is not allowed to send for the envelope sender "
            f"(spf={auth.spf})",
            report.return_path,
        )
    elif auth.spf == "softfail":
        yield indicator(
            NAME, "auth.spf_softfail", Verdict.UNDETECTED, 10, "SPF soft-failed (spf=softfail)"
        )
    if auth.dkim in _FAILED:
        yield indicator(
            NAME,
            "auth.dkim_fail",
            Verdict.UNDETECTED,
            15,
            f"the DKIM signature did not verify (dkim={auth.dkim})",
        )


def _divergence(report: ParsedReport, sender_domain: str) -> Iterator[Indicator]:
    for reply_to in report.reply_to[:5]:
        reply_domain = domain_of_address(reply_to.address)
        if not reply_domain or not sender_domain or reply_domain == sender_domain:
            continue
        to_freemail = is_freemail(reply_domain) and not is_freemail(sender_domain)
        yield indicator(
            NAME,
            "sender.reply_to_divergence",
            Verdict.SUSPICIOUS if to_freemail else Verdict.UNDETECTED,
            35 if to_freemail else 20,
            f"replies go to {reply_to.address} ({'a free mail provider, ' if to_freemail else ''}"
            f"another domain than the sender's {sender_domain})",
            reply_to.address,
        )
        break
    if report.return_path and sender_domain:
        bounce_domain = domain_of_address(report.return_path)
        if bounce_domain and bounce_domain != sender_domain:
            yield indicator(
                NAME,
                "sender.return_path_divergence",
                Verdict.UNDETECTED,
                10,
                f"the envelope sender (Return-Path {report.return_path}) is in another domain "
                f"than From ({sender_domain})",
                report.return_path,
            )


def _comparable_name(name: str) -> str:
    """Letters only, case-folded, accents dropped, "Last, First" read as "First Last"."""
    if name.count(",") == 1:
        last, first = name.split(",")
        name = f"{first} {last}"
    decomposed = unicodedata.normalize("NFKD", name[:200].casefold())
    return " ".join(
        "".join(char for char in word if char.isalpha()) for word in decomposed.split()
    ).strip()


def _matching_colleague(display_name: str, colleagues: Sequence[str]) -> str | None:
    shown = _comparable_name(display_name)
    if len(shown.replace(" ", "")) < 4:
        return None
    for colleague in colleagues:
        known = _comparable_name(colleague)
        if not known:
            continue
        if shown == known or sorted(shown.split()) == sorted(known.split()):
            return colleague
        if len(known) >= 8 and edit_distance(shown, known, limit=1) <= 1:
            return colleague
    return None
