"""Prove a PNG decodes without building its pixels: its picture data is streamed through
zlib and every row is checked as Pillow's decoder would check it.

A full decode of a 1 MP photo as PNG spends most of its time undoing the row filters and
holds the whole picture in memory; when only the API will look at the pixels (the URL is
sent), this finds the same faults (a corrupt or truncated stream, too little data, an
unknown row filter) in bounded memory, and the chunk checksums Pillow's `verify()` reads
(`Checksums`) in the same pass.
"""

from __future__ import annotations

import re
import struct

from isal import isal_zlib


class BrokenPng(ValueError):
    """Picture data that a decoder would refuse."""


SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Channels per colour type (grey, RGB, palette, grey+alpha, RGBA).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_MAX_FILTER = 4  # None, Sub, Up, Average, Paeth
IHDR_LENGTH = 13
# Inflated in pieces of at most this many bytes: memory stays small whatever the picture.
_PIECE = 4 << 20
# Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = (
    (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)
)  # fmt: skip


def is_plain_png(data: bytes) -> bool:
    """True for a PNG without an animation chunk before its picture data (an APNG's first
    frame may not be its IDAT). Pillow decides the same way: it reads the chunks up to the
    first IDAT when it opens a file. Only the chunk headers are read, not the picture data."""
    if not data.startswith(SIGNATURE):
        return False
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind == b"acTL":
            return False
        if kind == b"IDAT":
            return True
        offset += 12 + length  # header, body, CRC
    return True  # truncated before any picture data: the check says so


def _segments(header: bytes) -> list[tuple[int, int, int]]:
    """Where the rows lie in the inflated stream: (offset, row size with its filter byte,
    rows) for the picture, or for each of the seven passes of an interlaced one."""
    if len(header) != 13:
        raise BrokenPng("bad PNG header")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = _CHANNELS.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16) or interlace not in (0, 1):
        raise BrokenPng("bad PNG header")
    segments, offset = [], 0
    for x0, y0, dx, dy in _ADAM7 if interlace else ((0, 0, 1, 1),):
        columns = (width - x0 + dx - 1) // dx
        rows = (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            size = 1 + (columns * channels * depth + 7) // 8
            segments.append((offset, size, rows))
            offset += size * rows
    if not segments:
        raise BrokenPng("empty PNG")
    return segments


def _check_filters(piece: bytes, start: int, segments: list[tuple[int, int, int]]) -> None:
    """The filter byte of every row that begins in `piece` (at stream offset `start`)."""
    end = start + len(piece)
    for offset, size, rows in segments:
        low, high = max(start, offset), min(end, offset + size * rows)
        if low >= high:
            continue
        first = offset + (low - offset + size - 1) // size * size
        filters = piece[first - start : high - start : size]
        if filters and max(filters) > _MAX_FILTER:
            raise BrokenPng("corrupt PNG data (unknown row filter)")


def check_png(data: bytes) -> None:
    """Raise BrokenPng unless the picture data inflates, each row with a known filter,
    until the picture is complete or the zlib stream ends. Like Pillow, it reads the IDAT
    chunks in a row and ignores anything after the picture."""
    stream = PngStream()
    stream.feed(data)
    stream.verdict()


class PngStream:
    """`check_png` and Pillow's `verify()` (`Checksums`) in one pass, over a file fed at
    once or piece by piece. Never raises while fed; `verified` and `verdict` tell."""

    def __init__(self) -> None:
        self._buffer = bytearray()  # a signature or chunk header (or IHDR) being gathered
        self._need = len(SIGNATURE)
        self._state = "signature"  # then: header, IHDR, IDAT, skip, crc, done
        self._left = 0  # bytes left in the current chunk's body (or CRC)
        self._inflater = isal_zlib.decompressobj()
        self._segments: list[tuple[int, int, int]] | None = None
        self._seen = self._total = 0
        self._in_data = False
        self._error: BrokenPng | None = None
        self._checksums = Checksums()
        self.animated = False

    @property
    def decided(self) -> bool:
        """Whether `verdict` has an answer: the picture data is proven whole, or broken."""
        return self._error is not None or (self._state == "done" and self._segments is not None)

    def verdict(self) -> None:
        """Raise BrokenPng unless the picture data was whole (as fed so far)."""
        if self._error is not None:
            raise self._error
        if self._state != "done":
            raise BrokenPng("truncated PNG data")

    @property
    def verified(self) -> bool:
        """Whether the chunks from the first IDAT to IEND passed what Pillow's `verify()`
        checks (so `images.identify` need not read them again)."""
        return self._checksums.ok

    def feed(self, data: bytes) -> None:
        self._checksums.feed(data)
        view = memoryview(data)
        try:
            while view and self._state != "done" and self._error is None:
                view = self._step(view)
        except BrokenPng as exc:
            self._error = exc

    def _gather(self, view: memoryview) -> tuple[bytes | None, memoryview]:
        take = self._need - len(self._buffer)
        self._buffer += view[:take]
        if len(self._buffer) < self._need:
            return None, view[take:]
        whole, self._buffer = bytes(self._buffer), bytearray()
        return whole, view[take:]

    def _step(self, view: memoryview) -> memoryview:
        if self._state in ("signature", "header", "IHDR"):
            whole, view = self._gather(view)
            if whole is not None:
                self._gathered(whole)
            return view
        take = min(self._left, len(view))
        if self._state == "IDAT":
            self._inflate(bytes(view[:take]))
        self._left -= take
        if self._left == 0 and self._state == "done":
            return view[take:]
        if self._left == 0:
            # After a body comes its CRC (checked by `images.identify`), then a header.
            self._state, self._left = ("header", 0) if self._state == "crc" else ("crc", 4)
            self._need = 8
        return view[take:]

    def _gathered(self, whole: bytes) -> None:
        if self._state == "signature":
            if whole != SIGNATURE:
                raise BrokenPng("not a PNG")
            self._state, self._need = "header", 8
            return
        if self._state == "IHDR":
            segments = _segments(whole)
            offset, size, rows = segments[-1]
            self._total = offset + size * rows
            self._segments = segments
            self._state, self._left = "crc", 4
            return
        (length,) = struct.unpack(">I", whole[:4])
        kind = whole[4:]
        if kind == b"acTL":
            self.animated = True
        if kind == b"IHDR":
            if length != IHDR_LENGTH:
                raise BrokenPng("bad PNG header")
            self._state, self._need = "IHDR", length
        elif kind == b"IDAT":
            if self._segments is None:
                raise BrokenPng("PNG data before its header")
            self._in_data = True
            self._state, self._left = "IDAT", length
        elif self._in_data:
            raise BrokenPng("truncated PNG data")  # the picture data ended before the picture
        else:
            self._state, self._left = "skip", length
        if self._left == 0 and self._state in ("IDAT", "skip"):
            self._state, self._left = "crc", 4

    def _inflate(self, pending: bytes) -> None:
        assert self._segments is not None
        while pending and self._state != "done":
            try:
                piece = self._inflater.decompress(pending, min(_PIECE, self._total - self._seen))
            except isal_zlib.error as exc:
                raise BrokenPng("corrupt PNG data") from exc
            pending = self._inflater.unconsumed_tail
            _check_filters(piece, self._seen, self._segments)
            self._seen += len(piece)
            if self._seen >= self._total or self._inflater.eof:
                self._state = "done"  # Pillow too takes a stream that ends early


_CHUNK_NAME = re.compile(rb"\w\w\w\w")


class Checksums:
    """Pillow's `PngImageFile.verify()`, as the bytes arrive: from the first IDAT chunk
    to IEND, every chunk whole, named with four letters or digits, its CRC right (the
    chunks before IDAT are checked when Pillow opens the file)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._need = len(SIGNATURE)
        self._state = "signature"  # then: header, body, crc; ok or failed
        self._left = 0
        self._crc = 0
        self._checking = False  # from the first IDAT on

    @property
    def ok(self) -> bool:
        return self._state == "ok"

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._state not in ("ok", "failed"):
            if self._state == "body":
                take = min(self._left, len(view))
                if self._checking:
                    self._crc = isal_zlib.crc32(view[:take], self._crc)
                self._left -= take
                view = view[take:]
                if self._left == 0:
                    self._state, self._need = "crc", 4
                continue
            take = self._need - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == self._need:
                whole, self._buffer = bytes(self._buffer), bytearray()
                self._gathered(whole)

    def _gathered(self, whole: bytes) -> None:
        if self._state == "signature":
            self._state, self._need = "header", 8
        elif self._state == "crc":
            if self._checking and struct.unpack(">I", whole)[0] != self._crc:
                self._state = "failed"
            else:
                self._state, self._need = "header", 8
        else:
            (length,) = struct.unpack(">I", whole[:4])
            kind = whole[4:]
            self._checking = self._checking or kind == b"IDAT"
            if self._checking and not _CHUNK_NAME.match(kind):
                self._state = "failed"
            elif self._checking and kind == b"IEND":
                self._state = "ok"  # Pillow stops here: IEND's own CRC is not read
            else:
                self._crc = isal_zlib.crc32(kind)
                self._state, self._left = "body", length
                if length == 0:
                    self._state, self._need = "crc", 4
