"""The PNG check that replaces a full decode in URL mode refuses exactly what the decode
refused: every truncation, every flipped bit, every colour type, interlaced or not."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image

from bot import images, pngcheck
from bot.errors import BadInput
from tests.helpers import make_animation, make_image, make_png_bomb

ADAM7 = pngcheck._ADAM7


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def interlaced_png(width: int, height: int, seed: int = 1) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow reads these but does not write them)."""
    rng = random.Random(seed)
    pixels = [[rng.randbytes(3) for _ in range(width)] for _ in range(height)]
    raw = bytearray()
    for x0, y0, dx, dy in ADAM7:
        for y in range(y0, height, dy):
            row = b"".join(pixels[y][x] for x in range(x0, width, dx))
            if row:
                raw += b"\x00" + row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (
        pngcheck.SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def png(mode: str, seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (97, 61), rng.randbytes(97 * 61 * 3))
    img = Image.new("I;16", (97, 61), 300) if mode == "I;16" else img.convert(mode)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def decoded_verdict(data: bytes) -> bool:
    """What the bot did before: identify (chunk checksums) and decode every pixel."""
    try:
        images.identify(data)
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:
        return False
    return True


def checked_verdict(data: bytes) -> bool:
    try:
        images.identify(data)
        pngcheck.check_png(data)
    except (images.InvalidImage, pngcheck.BrokenPng):
        return False
    return True


SAMPLES = {
    **{mode: png(mode, i) for i, mode in enumerate(["RGB", "RGBA", "L", "LA", "P", "1", "I;16"])},
    "interlaced": interlaced_png(37, 23),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_check_accepts_what_decodes(name: str) -> None:
    assert decoded_verdict(SAMPLES[name]) and checked_verdict(SAMPLES[name])


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_check_refuses_each_truncation_the_decode_refused(name: str) -> None:
    data = SAMPLES[name]
    for cut in range(9, len(data)):
        assert checked_verdict(data[:cut]) == decoded_verdict(data[:cut]), cut


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_check_refuses_each_corruption_the_decode_refused(name: str) -> None:
    data, rng = SAMPLES[name], random.Random(name)
    for _ in range(300):
        broken = bytearray(data)
        broken[rng.randrange(8, len(broken))] ^= 1 << rng.randrange(8)
        assert checked_verdict(bytes(broken)) == decoded_verdict(bytes(broken))


def test_a_bad_row_filter_with_good_checksums_is_refused() -> None:
    raw = b"".join(b"\x07" + b"\x10" * 3 * 70 for _ in range(70))  # filter 7 does not exist
    data = (
        pngcheck.SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 70, 70, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    assert not decoded_verdict(data)
    with pytest.raises(pngcheck.BrokenPng, match="row filter"):
        pngcheck.check_png(data)
    with pytest.raises(BadInput, match="damaged or truncated"):
        images.input_for_api(data, "u", send_url=True, max_megapixels=2)


def test_picture_data_cut_short_is_refused_but_a_stream_that_ends_early_passes_as_before() -> None:
    raw = b"".join(b"\x00" + b"\x10" * 3 * 70 for _ in range(69))  # one row missing
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 70, 70, 8, 2, 0, 0, 0))
    ended = pngcheck.SIGNATURE + header + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    unended = zlib.compressobj()
    cut = unended.compress(raw) + unended.flush(zlib.Z_SYNC_FLUSH)  # no end of stream
    short = pngcheck.SIGNATURE + header + chunk(b"IDAT", cut) + chunk(b"IEND", b"")
    # Pillow leaves the missing row black when the stream says it is over; so does the check.
    assert decoded_verdict(ended) and checked_verdict(ended)
    assert not decoded_verdict(short)
    with pytest.raises(BadInput, match="damaged or truncated"):
        images.input_for_api(short, "u", send_url=True, max_megapixels=2)


def test_url_mode_sends_the_url_of_a_checked_png_without_decoding_it() -> None:
    data = make_png_bomb(8192, 4000)  # 33 MP of pixels that are never built
    sent = images.input_for_api(data, "https://cdn/x.png", send_url=True, max_megapixels=2)
    assert sent.value == "https://cdn/x.png" and sent.mode == "url"


def test_an_animated_png_is_still_proven_by_decoding_its_first_frame() -> None:
    data = make_animation(3, fmt="PNG")
    assert not pngcheck.is_plain_png(data)
    assert images.inspect_input(data).format == "png"
    assert pngcheck.is_plain_png(make_image())


def test_a_png_is_plain_unless_an_animation_chunk_comes_before_its_picture_data() -> None:
    """Decided from the chunk headers as Pillow reads them when it opens the file, not by
    searching the whole file (the picture data can hold any bytes)."""
    still = make_image()
    body = still[len(pngcheck.SIGNATURE) :]
    ihdr_end = 8 + 13 + 4
    text = chunk(b"tEXt", b"Comment\x00acTL in a comment")
    actl = chunk(b"acTL", struct.pack(">II", 2, 0))
    with_text = pngcheck.SIGNATURE + body[:ihdr_end] + text + body[ihdr_end:]
    animated = pngcheck.SIGNATURE + body[:ihdr_end] + actl + body[ihdr_end:]
    late = still[: -len(chunk(b"IEND", b""))] + actl + chunk(b"IEND", b"")
    assert pngcheck.is_plain_png(with_text)
    assert not pngcheck.is_plain_png(animated)
    assert pngcheck.is_plain_png(late)  # after the picture data: Pillow opens one frame
    assert getattr(Image.open(io.BytesIO(late)), "n_frames", 1) == 1
    assert not pngcheck.is_plain_png(b"GIF89a" + body)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_check_fed_piece_by_piece_says_the_same(name: str) -> None:
    data, rng = SAMPLES[name], random.Random(name)
    for cut in range(9, len(data), 7):
        whole = data[:cut]
        stream, at = pngcheck.PngStream(), 0
        while at < len(whole):
            step = rng.randrange(1, 40)
            stream.feed(whole[at : at + step])
            at += step
        try:
            stream.verdict()
            fed = True
        except pngcheck.BrokenPng:
            fed = False
        try:
            pngcheck.check_png(whole)
            at_once = True
        except pngcheck.BrokenPng:
            at_once = False
        assert fed == at_once, cut


def streamed_verdict(data: bytes) -> bool:
    """Pillow's open, then the stream's checksums and picture check instead of verify()."""
    stream = pngcheck.PngStream()
    stream.feed(data)
    try:
        images.open_image(data)
    except images.InvalidImage:
        return False
    if not stream.verified:
        return False
    try:
        stream.verdict()
    except pngcheck.BrokenPng:
        return False
    return True


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_streamed_checksums_refuse_what_verify_and_the_decode_refused(name: str) -> None:
    data, rng = SAMPLES[name], random.Random(name + "crc")
    for cut in range(9, len(data)):
        assert streamed_verdict(data[:cut]) == decoded_verdict(data[:cut]), cut
    for _ in range(300):
        broken = bytearray(data)
        broken[rng.randrange(8, len(broken))] ^= 1 << rng.randrange(8)
        assert streamed_verdict(bytes(broken)) == decoded_verdict(bytes(broken))
