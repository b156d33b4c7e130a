"""Decoding pictures in bounded memory: the header first (the decompression-bomb guard runs
before any pixel), then at reduced size where the format allows it (a JPEG decodes
straight at 1/2, 1/4 or 1/8 scale), then shrunk by whole factors before anything else
makes a copy. Also the Compare picture, drawn from such thumbnails."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageDraw, UnidentifiedImageError

from bot import pngcheck

EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Bytes per pixel as Pillow holds a picture (RGB is padded to four); others take four.
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}
# Modes `Image.reduce` takes; others are converted first (a band at a time).
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "I", "F"})
# What the decoder itself holds besides the picture (libheif's own buffer, row buffers).
_DECODER_OVERHEAD = 2
PNG_CHECK_BYTES = 8 * 1024 * 1024  # pngcheck's pieces and zlib's window
COMPARE_HEIGHT = 512
BAND_PIXELS = 2 * 1024 * 1024  # `shrunk` works on bands of about this many pixels
COMPARE_MAX_WIDTH = 2048  # a panorama's panel is made lower instead of wider
COMPARE_DRAFT_PX = COMPARE_HEIGHT * COMPARE_MAX_WIDTH * 4


class InvalidImage(ValueError):
    """Bytes that are not a usable image."""


def open_image(data: bytes) -> Image.Image:
    """Read the header only; a picture over Image.MAX_IMAGE_PIXELS is refused here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidImage("image has too many pixels") from exc
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InvalidImage("not a readable image") from exc


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 = as stored). Read it once loaded (Pillow turns a TIFF as it
    loads it) and before any copy (a copy has lost the tags of some formats)."""
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1


def oriented(img: Image.Image, turn: int) -> Image.Image:
    """`img` turned as its EXIF orientation says (done on the small copy, so it is cheap)."""
    method = _TRANSPOSE.get(turn)
    return img if method is None else img.transpose(method)


def compare_cost(before: bytes, after: bytes) -> int:
    """What `side_by_side` holds at most: the larger of its two decodes (one at a time)."""
    return max(
        decode_cost(d, check_only=False, max_pixels=COMPARE_DRAFT_PX) for d in (before, after)
    )


def decode_cost(data: bytes, *, check_only: bool, max_pixels: float) -> int:
    """About how many bytes decoding `data` holds at once, read from its header (0 when
    the header is unreadable: the check that follows refuses it at no cost)."""
    try:
        img = open_image(data)
    except InvalidImage:
        return 0
    pixels = img.width * img.height
    if img.format in ("JPEG", "MPO"):
        # Checked at 1/8 scale; converted from a draft at most twice the size needed.
        scale = 1 / 64 if check_only else min(1.0, 4 * max_pixels / max(1, pixels))
        return int(pixels * 4 * scale) + PNG_CHECK_BYTES
    if check_only and img.format == "PNG" and pngcheck.is_plain_png(data):
        return PNG_CHECK_BYTES
    overhead = 1 if img.format == "PNG" else _DECODER_OVERHEAD
    return pixels * _STORED.get(img.mode, 4) * overhead + PNG_CHECK_BYTES


def draft_at_least(img: Image.Image, pixels: float) -> None:
    """Let a JPEG decode at the smallest scale that still has `pixels` (no-op otherwise)."""
    if img.format not in ("JPEG", "MPO") or img.width * img.height <= pixels:
        return
    scale = (pixels / (img.width * img.height)) ** 0.5
    img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", (
        int(img.width * scale) + 1, int(img.height * scale) + 1
    ))  # fmt: skip


def shrunk(img: Image.Image, pixels: float) -> Image.Image:
    """A decoded picture brought within `pixels` by a whole factor (box filter: cheap), a
    band of rows at a time: Pillow premultiplies alpha (and converts a palette) in a
    full-size copy, which here is only band-sized. The caller finishes with an exact resize."""
    factor = int((img.width * img.height / pixels) ** 0.5)
    if factor < 2:
        return img
    mode = img.mode if img.mode in _REDUCIBLE else ("RGBA" if _has_alpha(img) else "RGB")
    out = Image.new(mode, (img.width // factor, img.height // factor))
    rows = max(1, BAND_PIXELS // img.width // factor) * factor
    for top in range(0, out.height * factor, rows):
        band = img.crop((0, top, out.width * factor, min(top + rows, out.height * factor)))
        if band.mode != mode:
            band = band.convert(mode)
        out.paste(band.reduce(factor), (0, top // factor))
    return out


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def thumbnail(
    data: bytes, height: int, max_width: int = COMPARE_MAX_WIDTH, max_pixels: float | None = None
) -> Image.Image:
    """The first frame, upright, in RGB, `height` pixels high (lower if it would be wider
    than `max_width`): decoded at reduced size; refused over `max_pixels` before decoding."""
    img = open_image(data)
    if max_pixels is not None and img.width * img.height > max_pixels:
        raise InvalidImage("more pixels than the bot decodes")
    longest = max(img.width, img.height) / max(1, min(img.width, img.height))
    wanted = height * min(height * longest, max_width)  # whichever way up it turns out
    try:
        img.seek(0)
        draft_at_least(img, wanted * 4)
        img.load()
        turn = orientation(img)
        img = oriented(shrunk(img, wanted * 4).convert("RGB"), turn)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImage("not a readable image") from exc
    width = max(1, round(img.width * height / img.height))
    if width > max_width:
        width, height = max_width, max(1, round(img.height * max_width / img.width))
    return img.resize((width, height), Image.Resampling.LANCZOS)


def side_by_side(
    before: bytes, after: bytes, *, height: int = COMPARE_HEIGHT, max_pixels: float | None = None
) -> bytes:
    """A labelled before/after PNG of two images scaled to the same height, each decoded
    only as large as it is shown. CPU-bound: run it in the image pool."""
    panels = [thumbnail(data, height, max_pixels=max_pixels) for data in (before, after)]
    label_h, gap = 28, 8
    canvas = Image.new(
        "RGB", (panels[0].width + gap + panels[1].width, height + label_h), (32, 34, 37)
    )
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, panel in zip(("Before", "After"), panels, strict=True):
        canvas.paste(panel, (x, label_h + (height - panel.height) // 2))
        draw.text((x + 8, 7), label, fill=(240, 240, 240))
        x += panel.width + gap
    out = io.BytesIO()
    canvas.save(out, "PNG")
    return out.getvalue()
