"""Grouping the cases of one campaign into clusters.

Two cases belong together when they share any of:

- the sender's registrable domain **and** the normalised subject (lower-cased, RE:/FW:/AW:…
  prefixes, digits and punctuation removed, whitespace collapsed), so "RE: Invoice 4471"
  and "Invoice 9912" from the same domain match;
- a link (normalised URL, outside the organisation's own domains);
- an attachment (SHA-256);
- a similar body: the estimated Jaccard similarity of the bodies' word 3-shingles is at least
  the `cluster_similarity` setting (default 0.6). It is estimated with our own MinHash
  (128 hash functions) and found through locality-sensitive hashing (32 bands of 4 rows):
  two bodies at 0.6 similarity share a band with probability ≈ 0.99, at 0.3 ≈ 0.23; the
  candidates a band brings are then checked against the threshold.

Each case's keys (digests of kind and value) are stored in `report_case_keys`, so finding
candidates is one indexed lookup, not a scan of every case. Every input is bounded: the
first 5,000 words of the body, 50 links and 50 attachment hashes per case, 500 candidates.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import re2
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mailtrawl.reports.models import CaseKey, ReportCase, ReportCluster

PERMUTATIONS = 128
BANDS = 32
ROWS = PERMUTATIONS // BANDS
SHINGLE_WORDS = 3
MAX_WORDS = 5_000
MIN_SHINGLES = 8  # shorter bodies say too little to be compared
MAX_KEYS_PER_KIND = 50
MAX_CANDIDATES = 500
MIN_SUBJECT = 4
_PRIME = (1 << 61) - 1

_PREFIX = re2.compile(
    r"(?i)^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|rv|enc|antw|doorst|r|i)\s*(?:\[\d+\])?\s*[:：]\s*)+"
)
_NOISE = re2.compile(r"[\p{N}\p{P}\p{S}\p{Z}\p{C}\s_]+")  # Unicode-aware
_WORD = re2.compile(r"[\p{L}\p{N}]+")


def _coefficients() -> tuple[tuple[int, int], ...]:
    # Fixed, derived from a label: signatures stay comparable across processes and versions.
    out = []
    for index in range(PERMUTATIONS):
        digest = hashlib.sha256(f"mailtrawl-minhash-{index}".encode()).digest()
        a, b = struct.unpack("<QQ", digest[:16])
        out.append(((a % (_PRIME - 1)) + 1, b % _PRIME))
    return tuple(out)


_COEFFICIENTS = _coefficients()


def normalise_subject(subject: str) -> str:
    """The subject without reply/forward prefixes, digits, punctuation and extra spaces."""
    text = _PREFIX.sub("", subject[:1000])
    return " ".join(_NOISE.sub(" ", text.lower()).split())[:300]


def shingles(text: str) -> set[bytes]:
    """The body's word 3-shingles, hashed to 8 bytes each (bounded to MAX_WORDS words)."""
    words: list[str] = []
    for match in _WORD.finditer(text[: MAX_WORDS * 20].lower()):
        words.append(match.group(0))
        if len(words) >= MAX_WORDS:
            break
    return {
        hashlib.blake2b(" ".join(words[i : i + SHINGLE_WORDS]).encode(), digest_size=8).digest()
        for i in range(max(0, len(words) - SHINGLE_WORDS + 1))
    }


def minhash(items: Iterable[bytes]) -> list[int]:
    """A MinHash signature (PERMUTATIONS values) of a set of hashed shingles; [] when empty."""
    values = [int.from_bytes(item, "little") for item in items]
    if len(values) < MIN_SHINGLES:
        return []
    signature = []
    for a, b in _COEFFICIENTS:
        signature.append(min((a * v + b) % _PRIME for v in values))
    return signature


def similarity(first: Sequence[int], second: Sequence[int]) -> float:
    """Estimated Jaccard similarity of two signatures (0 when either is missing)."""
    if len(first) != PERMUTATIONS or len(second) != PERMUTATIONS:
        return 0.0
    return sum(1 for x, y in zip(first, second, strict=True) if x == y) / PERMUTATIONS


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()


@dataclass(frozen=True)
class CaseFeatures:
    sender_domain: str
    subject: str
    urls: tuple[str, ...]
    hashes: tuple[str, ...]
    signature: tuple[int, ...]

    def keys(self) -> dict[str, str]:
        """digest -> kind, for `report_case_keys`."""
        keys: dict[str, str] = {}
        normalised = normalise_subject(self.subject)
        if self.sender_domain and len(normalised) >= MIN_SUBJECT:
            keys[_digest("subject", f"{self.sender_domain}|{normalised}")] = "subject"
        for url in self.urls[:MAX_KEYS_PER_KIND]:
            keys[_digest("url", url)] = "url"
        for sha in self.hashes[:MAX_KEYS_PER_KIND]:
            keys[_digest("hash", sha)] = "hash"
        if len(self.signature) == PERMUTATIONS:
            for band in range(BANDS):
                rows = self.signature[band * ROWS : (band + 1) * ROWS]
                keys[_digest("band", f"{band}:" + ",".join(map(str, rows)))] = "band"
        return keys


def assign_cluster(
    session: Session, *, case: ReportCase, features: CaseFeatures, threshold: float
) -> ReportCluster | None:
    """Store the case's keys, find the cases it shares one with, and put them in one cluster.

    Cases already in different clusters are merged into the oldest of them. Returns the
    case's cluster (None when it matches no other case and had none).
    """
    keys = features.keys()
    session.execute(delete(CaseKey).where(CaseKey.case_id == case.id))
    session.add_all(CaseKey(case_id=case.id, digest=d, kind=k) for d, k in keys.items())
    session.flush()
    if not keys:
        return _cluster_of(session, case)
    rows = session.execute(
        select(CaseKey.case_id, CaseKey.kind)
        .where(CaseKey.digest.in_(list(keys)), CaseKey.case_id != case.id)
        .limit(MAX_CANDIDATES * 4)
    ).all()
    strong: set[uuid.UUID] = set()
    by_band: set[uuid.UUID] = set()
    for case_id, kind in rows:
        (by_band if kind == "band" else strong).add(case_id)
    matched = set(strong)
    for other_id in list(by_band - strong)[:MAX_CANDIDATES]:
        other = session.get(ReportCase, other_id)
        if other is not None and similarity(features.signature, other.body_signature) >= threshold:
            matched.add(other_id)
    if not matched:
        return _cluster_of(session, case)
    members = list(
        session.scalars(select(ReportCase).where(ReportCase.id.in_(list(matched)[:MAX_CANDIDATES])))
    )
    members.append(case)
    cluster_ids = {m.cluster_id for m in members if m.cluster_id is not None}
    clusters = list(
        session.scalars(
            select(ReportCluster)
            .where(ReportCluster.id.in_(cluster_ids))
            .order_by(ReportCluster.created_at, ReportCluster.id)
        )
    )
    if clusters:
        target = clusters[0]
    else:
        target = ReportCluster(label=_label(case), investigation_ids=[])
        session.add(target)
        session.flush()
    for merged in clusters[1:]:
        # Merged: the campaign's investigations follow the cases.
        target.investigation_ids = list(
            dict.fromkeys([*target.investigation_ids, *merged.investigation_ids])
        )
        session.execute(
            update(ReportCase)
            .where(ReportCase.cluster_id == merged.id)
            .values(cluster_id=target.id)
        )
        session.delete(merged)
    for member in members:
        member.cluster_id = target.id
        if not target.investigation_ids and member.investigation_ids:
            # A case judged before the cluster formed brings its campaign investigation.
            target.investigation_ids = list(member.investigation_ids)
    session.flush()
    refresh_count(session, target)
    return target


def _cluster_of(session: Session, case: ReportCase) -> ReportCluster | None:
    return session.get(ReportCluster, case.cluster_id) if case.cluster_id else None


def refresh_count(session: Session, cluster: ReportCluster) -> None:
    cluster.case_count = (
        session.scalar(
            select(func.count()).select_from(ReportCase).where(ReportCase.cluster_id == cluster.id)
        )
        or 0
    )


def _label(case: ReportCase) -> str:
    subject = normalise_subject(case.subject) or "(no subject)"
    return f"{case.sender_domain or '(unknown sender)'}: {subject}"[:400]


__all__ = [
    "BANDS",
    "PERMUTATIONS",
    "CaseFeatures",
    "assign_cluster",
    "minhash",
    "normalise_subject",
    "refresh_count",
    "shingles",
    "similarity",
]
