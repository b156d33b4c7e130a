"""A JPEG sent as it is, minus what it says beyond its picture.

In base64 mode a member's JPEG was decoded and encoded afresh only to drop its metadata
(EXIF with the camera and the GPS position, XMP, IPTC, comments, embedded thumbnails).
Dropping those segments from the file gives the same privacy without the two passes
over every pixel, and without a second lossy encode. The picture's own segments (tables,
frame, scans) are kept byte for byte, and so is Adobe's APP14, which says how to read the
colours.
"""

from __future__ import annotations

import struct

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
APP0, APP14, COM = 0xE0, 0xEE, 0xFE
# Markers that stand alone, without a length: restarts, SOI, EOI, TEM.
_STANDALONE = frozenset({*range(0xD0, 0xD8), SOI, EOI, 0x01})
# Huffman-coded frames a decoder is sure to read: baseline, extended, progressive.
PLAIN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
_JFIF_WITHOUT_THUMBNAIL = 16  # APP0's length when it carries no picture of its own


class NotPlain(ValueError):
    """A JPEG this module will not rewrite (the caller encodes it afresh)."""


def _dropped(marker: int, segment: bytes) -> bool:
    if marker == COM or (0xE1 <= marker <= 0xEF and marker != APP14):
        return True  # EXIF, XMP, ICC, IPTC, Photoshop, comments
    # JFIF's header is kept (it says the colours are YCbCr), its thumbnail is not.
    return marker == APP0 and not (
        segment[4:9] == b"JFIF\x00" and len(segment) == 2 + _JFIF_WITHOUT_THUMBNAIL
    )


def without_metadata(data: bytes) -> bytes:
    """The JPEG with every metadata segment removed and nothing after its end. Raises
    NotPlain for anything but a whole Huffman-coded JPEG."""
    if data[:2] != b"\xff\xd8":
        raise NotPlain("not a JPEG")
    out = bytearray(data[:2])
    pos, frames, scans = 2, set(), 0
    while True:
        marker, pos = _next_marker(data, pos)
        if marker == EOI:
            out += b"\xff\xd9"
            break
        if marker in _STANDALONE:
            out += data[pos - 2 : pos]
            continue
        if pos + 2 > len(data):
            raise NotPlain("truncated")
        (length,) = struct.unpack_from(">H", data, pos)
        end = pos + length
        if length < 2 or end > len(data):
            raise NotPlain("truncated")
        segment = data[pos - 2 : end]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frames.add(marker)
        if not _dropped(marker, segment):
            out += segment
        pos = end
        if marker == SOS:
            scans += 1
            scan_end = _scan_end(data, pos)
            out += data[pos:scan_end]
            pos = scan_end
    if not scans or not frames or not frames <= PLAIN_FRAMES:
        raise NotPlain("not one Huffman-coded picture")
    return bytes(out)


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """The marker at `pos` (fill bytes skipped) and where its segment starts."""
    if pos >= len(data) or data[pos] != 0xFF:
        raise NotPlain("no marker where one belongs")
    while pos < len(data) and data[pos] == 0xFF:
        pos += 1
    if pos >= len(data):
        raise NotPlain("truncated")
    return data[pos], pos + 1


def _scan_end(data: bytes, pos: int) -> int:
    """Where a scan's coded data ends: the first 0xFF that is neither a stuffed zero nor a
    restart marker."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise NotPlain("truncated")
        follower = data[pos + 1]
        if follower == 0x00 or 0xD0 <= follower <= 0xD7:
            pos += 2
            continue
        if follower == 0xFF:  # fill before a marker
            pos += 1
            continue
        return pos
