"""Looking inside zip attachments in memory, with limits that defuse decompression bombs.

Nothing is extracted to disk. Members are streamed through the decompressor in chunks and
hashed on the way; only small members are kept for further inspection (nested archives, Office
macros, HTML forms). Four limits bound the work, and crossing one gives a warning, never an
error: the number of members, the bytes read per member, the bytes read for the whole
attachment (shared by nested archives), and the ratio of uncompressed to compressed size,
checked both against the sizes the archive declares and against the bytes actually produced
(declared sizes are the attacker's to forge). Encrypted members are noted and not read.
7z, RAR and ISO images are recognised by their magic numbers (see `filetypes`) but not opened.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from dataclasses import dataclass, field

from mailtrawl.analysis import filetypes
from mailtrawl.matching.attachments import HASH_ALGORITHMS

_CHUNK = 256 * 1024
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_MAX_NAME = 1_024


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_members: int = 1_000  # members looked at in one archive
    max_declared_members: int = 20_000  # more than this and the archive is not opened at all
    max_member_bytes: int = 25 * 1024 * 1024
    max_total_bytes: int = 100 * 1024 * 1024  # for one attachment, nested archives included
    max_ratio: int = 200  # uncompressed / compressed, per member
    keep_bytes: int = 8 * 1024 * 1024  # members up to this size are kept for inspection
    max_depth: int = 2  # archives inside archives


@dataclass(slots=True)
class ArchiveMember:
    """One file inside an archive, as far as it was read."""

    name: str  # the member's own name inside its archive
    container: str  # the archive it came out of, as a path ("outer.zip/inner.zip")
    depth: int  # 1 for a member of a top-level attachment
    declared_size: int
    compressed_size: int
    size: int  # bytes actually read (the full size when `complete`)
    encrypted: bool
    complete: bool
    head: bytes  # the first bytes, for sniffing
    digests: dict[str, str] | None  # None unless the member was read completely
    content: bytes | None  # kept when complete and small enough
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ArchiveListing:
    members: list[ArchiveMember] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every member name of the top archive
    encrypted: bool = False  # at least one member is encrypted
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Budget:
    bytes_left: int


def inspect_zip(data: bytes, name: str, limits: ArchiveLimits | None = None) -> ArchiveListing:
    """List and read the members of a zip archive held in `data`; never raises."""
    limits = limits or ArchiveLimits()
    listing = ArchiveListing()
    _inspect(data, name, 1, limits, _Budget(limits.max_total_bytes), listing, top=True)
    return listing


def declared_member_count(data: bytes) -> int | None:
    """The member count the zip's end-of-central-directory record states, or None if absent."""
    end = data.rfind(_EOCD, max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return None
    (count,) = struct.unpack_from("<H", data, end + 10)
    locator = end - 20
    if count == 0xFFFF and locator >= 0 and data[locator : locator + 4] == _ZIP64_LOCATOR:
        (offset,) = struct.unpack_from("<Q", data, locator + 8)
        if offset + 40 <= len(data) and data[offset : offset + 4] == b"PK\x06\x06":
            (count,) = struct.unpack_from("<Q", data, offset + 32)
    return int(count)


def _inspect(
    data: bytes,
    container: str,
    depth: int,
    limits: ArchiveLimits,
    budget: _Budget,
    listing: ArchiveListing,
    *,
    top: bool,
) -> None:
    declared = declared_member_count(data)
    if declared is not None and declared > limits.max_declared_members:
        listing.warnings.append(
            f"{container} declares {declared} members, more than {limits.max_declared_members}: "
            "not opened (possible decompression bomb)"
        )
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except Exception as exc:  # BadZipFile, or a struct/unicode error on a forged directory
        listing.warnings.append(f"{container} could not be read as a zip ({type(exc).__name__})")
        return
    with archive:
        if top:
            listing.names = [info.filename[:_MAX_NAME] for info in infos[: limits.max_members]]
        if len(infos) > limits.max_members:
            listing.warnings.append(
                f"{container} has {len(infos)} members; only the first {limits.max_members} "
                "were inspected"
            )
        for info in infos[: limits.max_members]:
            if info.is_dir():
                continue
            member = _read_member(archive, info, container, depth, limits, budget)
            listing.members.append(member)
            listing.encrypted |= member.encrypted
            listing.warnings.extend(member.warnings)
            nested = member.content is not None and filetypes.sniff(member.head) == filetypes.ZIP
            if nested and depth < limits.max_depth:
                assert member.content is not None
                _inspect(
                    member.content,
                    f"{container}/{member.name}",
                    depth + 1,
                    limits,
                    budget,
                    listing,
                    top=False,
                )
            elif nested:
                listing.warnings.append(
                    f"{container}/{member.name}: archive nested more than {limits.max_depth} "
                    "levels deep was not opened"
                )


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    container: str,
    depth: int,
    limits: ArchiveLimits,
    budget: _Budget,
) -> ArchiveMember:
    member = ArchiveMember(
        name=info.filename[:_MAX_NAME],
        container=container,
        depth=depth,
        declared_size=info.file_size,
        compressed_size=info.compress_size,
        size=0,
        encrypted=bool(info.flag_bits & 0x1),
        complete=False,
        head=b"",
        digests=None,
        content=None,
    )
    where = f"{container}/{member.name}"
    if member.encrypted:
        return member
    if budget.bytes_left <= 0:
        member.warnings.append(
            f"{where} not read: the {limits.max_total_bytes} bytes allowed for the attachment "
            "were used up"
        )
        return member
    ratio_bound = max(info.compress_size, 1) * limits.max_ratio
    declared_bomb = info.file_size > ratio_bound and info.file_size > _CHUNK
    if declared_bomb:
        member.warnings.append(
            f"{where} declares {info.file_size} bytes from {info.compress_size} compressed "
            f"(ratio over {limits.max_ratio}): possible decompression bomb, only its head was read"
        )
    hashes = [hashlib.new(algorithm, usedforsecurity=False) for algorithm in HASH_ALGORITHMS]
    kept: list[bytes] | None = []
    cap = min(limits.max_member_bytes, budget.bytes_left, _CHUNK if declared_bomb else 1 << 62)
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(min(_CHUNK, cap - member.size + 1))
                if not chunk:
                    member.complete = not declared_bomb or member.size == info.file_size
                    break
                member.size += len(chunk)
                if not member.head:
                    member.head = chunk[:4_096]
                if member.size > cap or member.size > ratio_bound:
                    _stopped(member, where, cap, ratio_bound, limits, declared_bomb)
                    break
                for digest in hashes:
                    digest.update(chunk)
                if kept is not None:
                    kept.append(chunk)
                    if member.size > limits.keep_bytes:
                        kept = None
    except Exception as exc:  # bad CRC, unsupported method (AES, deflate64), truncated data
        member.warnings.append(f"{where} could not be read ({type(exc).__name__})")
        member.complete = False
    budget.bytes_left -= member.size
    if member.complete:
        member.digests = {
            algorithm: digest.hexdigest()
            for algorithm, digest in zip(HASH_ALGORITHMS, hashes, strict=True)
        }
        member.content = b"".join(kept) if kept is not None else None
    return member


def _stopped(
    member: ArchiveMember,
    where: str,
    cap: int,
    ratio_bound: int,
    limits: ArchiveLimits,
    declared_bomb: bool,
) -> None:
    member.complete = False
    if declared_bomb:
        return  # already warned
    if member.size > ratio_bound:
        member.warnings.append(
            f"{where} expands more than {limits.max_ratio} times its compressed size: "
            "possible decompression bomb, reading stopped"
        )
    else:
        member.warnings.append(f"{where} is larger than the {cap} bytes read; reading stopped")
