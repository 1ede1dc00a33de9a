"""A minimal writer of OLE2 compound files (CFB version 3), enough to build Office and Outlook
test documents: storages, streams (small ones in the mini stream), one FAT, no DIFAT."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

_FREE, _END, _FAT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
_NOSTREAM = 0xFFFFFFFF
_SECTOR, _MINI, _CUTOFF = 512, 64, 4096


@dataclass
class _Entry:
    name: str
    kind: int  # 1 storage, 2 stream, 5 root
    data: bytes = b""
    children: list[int] = field(default_factory=list)
    start: int = _END
    index: int = 0


def build_cfb(files: dict[str, bytes]) -> bytes:
    """A compound file holding `files` ("Storage/Sub/Stream" paths -> contents)."""
    entries = [_Entry("Root Entry", 5)]
    by_path: dict[str, int] = {"": 0}
    for path, data in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            if sub in by_path:
                continue
            leaf = depth == len(parts)
            entries.append(_Entry(parts[depth - 1], 2 if leaf else 1, data if leaf else b""))
            by_path[sub] = len(entries) - 1
            entries[by_path["/".join(parts[: depth - 1])]].children.append(len(entries) - 1)
    mini = bytearray()
    minifat: list[int] = []
    large: list[_Entry] = []
    for entry in entries:
        if entry.kind != 2 or not entry.data:
            continue
        if len(entry.data) < _CUTOFF:
            first = len(minifat)
            count = -(-len(entry.data) // _MINI)
            minifat += [first + i + 1 for i in range(count - 1)] + [_END]
            entry.start = first
            mini += entry.data.ljust(count * _MINI, b"\0")
        else:
            large.append(entry)
    directory = bytearray()
    for entry in entries:
        directory += _dir_entry(entry, entries, 0 if entry.kind == 5 else None)
    while len(directory) % _SECTOR:
        directory += _empty_entry()
    minifat_bytes = b"".join(struct.pack("<I", v) for v in minifat)
    minifat_bytes = minifat_bytes.ljust(-(-len(minifat_bytes) // _SECTOR) * _SECTOR, b"\xff")
    mini_bytes = bytes(mini).ljust(-(-len(mini) // _SECTOR) * _SECTOR, b"\0")
    blocks: list[tuple[str, bytes]] = [("dir", bytes(directory))]
    if minifat_bytes:
        blocks += [("minifat", minifat_bytes), ("mini", mini_bytes)]
    for entry in large:
        blocks.append(
            (
                f"s{entries.index(entry)}",
                entry.data.ljust(-(-len(entry.data) // _SECTOR) * _SECTOR, b"\0"),
            )
        )
    data_sectors = sum(len(b) // _SECTOR for _, b in blocks)
    fat_sectors = 1
    while fat_sectors * 128 < fat_sectors + data_sectors:
        fat_sectors += 1
    fat = [_FAT] * fat_sectors
    starts: dict[str, int] = {}
    for name, block in blocks:
        count = len(block) // _SECTOR
        starts[name] = len(fat)
        fat += [len(fat) + i + 1 for i in range(count - 1)] + [_END]
    fat += [_FREE] * (fat_sectors * 128 - len(fat))
    # Patch the start sectors now that the layout is known.
    root = entries[0]
    root.start = starts.get("mini", _END)
    root.data = bytes(mini)
    for entry in large:
        entry.start = starts[f"s{entries.index(entry)}"]
    directory = bytearray()
    for entry in entries:
        directory += _dir_entry(entry, entries, None)
    while len(directory) % _SECTOR:
        directory += _empty_entry()
    blocks[0] = ("dir", bytes(directory))
    header = bytearray()
    header += b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16
    header += struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
    header += struct.pack("<II", 0, fat_sectors)
    header += struct.pack("<II", starts["dir"], 0)
    header += struct.pack("<I", _CUTOFF)
    header += struct.pack("<II", starts.get("minifat", _END), len(minifat_bytes) // _SECTOR)
    header += struct.pack("<II", _END, 0)
    difat = list(range(fat_sectors)) + [_FREE] * (109 - fat_sectors)
    header += b"".join(struct.pack("<I", v) for v in difat)
    assert len(header) == _SECTOR
    body = b"".join(struct.pack("<I", v) for v in fat) + b"".join(b for _, b in blocks)
    return bytes(header) + body


def _dir_entry(entry: _Entry, entries: list[_Entry], _unused: int | None) -> bytes:
    name = entry.name.encode("utf-16-le") + b"\0\0"
    siblings = _sibling_links(entries)
    left, right = _NOSTREAM, siblings.get(id(entry), _NOSTREAM)
    child = entry.children[0] if entry.children else _NOSTREAM
    size = len(entry.data)
    return (
        name.ljust(64, b"\0")
        + struct.pack("<HBB", len(name), entry.kind, 1)
        + struct.pack("<III", left, right, child)
        + b"\0" * 16
        + b"\0" * 4
        + b"\0" * 16
        + struct.pack("<IIi", entry.start if (entry.data or entry.kind == 5) else _END, size, 0)
    )


def _sibling_links(entries: list[_Entry]) -> dict[int, int]:
    """Each child points to the next one through its right sibling (a degenerate tree)."""
    links: dict[int, int] = {}
    for parent in entries:
        for here, after in zip(parent.children, parent.children[1:], strict=False):
            links[id(entries[here])] = after
    return links


def _empty_entry() -> bytes:
    return (
        b"\0" * 64
        + struct.pack("<HBB", 0, 0, 0)
        + struct.pack("<III", _NOSTREAM, _NOSTREAM, _NOSTREAM)
        + b"\0" * 36
        + struct.pack("<IIi", 0, 0, 0)
    )
