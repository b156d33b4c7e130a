"""Realistic input photos: a colour gradient under sensor-like noise, saved as JPEG.

Flat colour compresses to almost nothing and pure noise to far more than a camera's file;
a gradient with moderate noise lands near a phone photo's size (about 0.4 MB per megapixel).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image, ImageChops

NOISE_SIGMA = 18
JPEG_QUALITY = 90


def make_photo(width: int, height: int, fmt: str = "JPEG") -> bytes:
    """A `width` x `height` JPEG (or PNG) that decodes and compresses like a real photo."""
    across = Image.linear_gradient("L").resize((width, height))
    down = Image.linear_gradient("L").rotate(90).resize((width, height))
    noise = Image.effect_noise((width, height), NOISE_SIGMA)
    red = ImageChops.add(across, noise, offset=-128)
    green = ImageChops.add(down, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), offset=-128)
    blue = Image.effect_noise((width, height), NOISE_SIGMA).point(lambda v: v // 2 + 60)
    out = io.BytesIO()
    photo = Image.merge("RGB", (red, green, blue))
    if fmt == "JPEG":
        photo.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        photo.save(out, fmt)
    return out.getvalue()


def make_worst(width: int, height: int) -> bytes:
    """The picture that costs the bot most memory: RGBA (four bytes a pixel once decoded)
    at the largest size it accepts, smooth enough to stay small on the wire."""
    across = Image.linear_gradient("L").resize((width, height))
    down = Image.linear_gradient("L").rotate(90).resize((width, height))
    out = io.BytesIO()
    Image.merge("RGBA", (across, down, ImageChops.invert(across), down)).save(out, "PNG")
    return out.getvalue()


def main() -> None:
    """`python -m bench.photos DIR NAME=WIDTHxHEIGHT[.png]...`: write DIR/NAME.jpg (or
    .png) for each."""
    out_dir = Path(sys.argv[1])
    for spec in sys.argv[2:]:
        name, size = spec.split("=", 1)
        size, _, ext = size.partition(".")
        width, height = (int(v) for v in size.split("x"))
        if ext == "rgba.png":
            data = make_worst(width, height)
        else:
            data = make_photo(width, height, "PNG" if ext == "png" else "JPEG")
        (out_dir / f"{name}.{ext.removeprefix('rgba.') or 'jpg'}").write_bytes(data)


if __name__ == "__main__":
    main()
