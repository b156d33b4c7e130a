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


def make_photo(width: int, height: int) -> bytes:
    """A `width` x `height` JPEG that decodes and compresses like a real photo."""
    across = Image.linear_gradient("L").resize((width, height))
    down = Image.linear_gradient("L").rotate(90).resize((width, height))
    noise = Image.effect_noise((width, height), NOISE_SIGMA)
    red = ImageChops.add(across, noise, offset=-128)
    green = ImageChops.add(down, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), offset=-128)
    blue = Image.effect_noise((width, height), NOISE_SIGMA).point(lambda v: v // 2 + 60)
    out = io.BytesIO()
    Image.merge("RGB", (red, green, blue)).save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def main() -> None:
    """`python -m bench.photos DIR NAME=WIDTHxHEIGHT...`: write DIR/NAME.jpg for each."""
    out_dir = Path(sys.argv[1])
    for spec in sys.argv[2:]:
        name, size = spec.split("=", 1)
        width, height = (int(v) for v in size.split("x"))
        (out_dir / f"{name}.jpg").write_bytes(make_photo(width, height))


if __name__ == "__main__":
    main()
