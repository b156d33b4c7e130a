"""In base64 mode an upright JPEG goes to the API as it is, minus its metadata: nothing
about the member's camera or whereabouts leaves, and the picture is not encoded again."""

from __future__ import annotations

import base64
import io
import random
import struct

import pytest
from PIL import Image

from bot import images, jpegclean
from bot.errors import BadInput
from tests.helpers import EXIF_GPS_IFD, make_exif_image, make_exif_jpeg, open_image


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def photo(*, progressive: bool = False, mode: str = "RGB") -> bytes:
    rng = random.Random(7)
    img = Image.frombytes("RGB", (320, 240), rng.randbytes(320 * 240 * 3)).convert(mode)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, progressive=progressive)
    return out.getvalue()


def with_everything(jpeg: bytes) -> bytes:
    """`jpeg` with EXIF (camera, GPS), XMP, a comment, an ICC profile, a JFIF thumbnail
    and a second picture after its end, as phones and editors leave them."""
    upright = make_exif_image(64, 48, orientation=1)
    exif = upright[upright.index(b"\xff\xe1") :]
    (length,) = struct.unpack(">H", exif[2:4])
    extra = (
        exif[: 2 + length]
        + segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>HomeTown</x:xmpmeta>")
        + segment(0xFE, b"shot at 12 Secret Street")
        + segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + b"profile-by-SecretCam")
        + segment(0xE0, b"JFXX\x00\x10" + b"thumbnail-of-the-kids" * 4)
    )
    return jpeg[:20] + extra + jpeg[20:] + b"\xff\xd8trailing second picture\xff\xd9"


def sent(data: bytes, max_megapixels: float = 2.0) -> bytes:
    api_input = images.input_for_api(
        data, "https://cdn/x.jpg", send_url=False, max_megapixels=max_megapixels
    )
    assert api_input.mode == "base64"
    return base64.b64decode(api_input.value, validate=True)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_an_upright_jpeg_goes_as_it_is_without_its_metadata(progressive: bool) -> None:
    clean = photo(progressive=progressive)
    loaded = with_everything(clean)
    assert b"SecretCam" in loaded and open_image(loaded).getexif().get_ifd(EXIF_GPS_IFD)
    raw = sent(loaded)
    for secret in (b"SecretCam", b"HomeTown", b"Secret Street", b"kids", b"Exif", b"trailing"):
        assert secret not in raw
    out = open_image(raw)
    assert dict(out.getexif()) == {} and "icc_profile" not in out.info
    # Not encoded again: the same pixels as the member's own file, and its scans as they were.
    assert out.tobytes() == open_image(clean).tobytes()
    assert raw == clean  # Pillow's own file has only JFIF's header, which is kept


def test_a_turned_or_too_large_jpeg_is_still_encoded_afresh() -> None:
    turned = make_exif_jpeg(200, 100, orientation=6)
    assert open_image(sent(turned)).size == (100, 200)
    large = photo()
    assert open_image(sent(large, max_megapixels=0.05)).size != (320, 240)


def test_a_cmyk_jpeg_is_encoded_afresh_as_rgb() -> None:
    assert open_image(sent(photo(mode="CMYK"))).mode == "RGB"


def test_a_truncated_jpeg_is_refused_as_damaged() -> None:
    whole = photo()
    with pytest.raises(BadInput, match="damaged or truncated"):
        sent(whole[: len(whole) // 2])


@pytest.mark.parametrize(
    "data",
    [b"not a jpeg", b"\xff\xd8\xff\xdb\x00", b"\xff\xd8\xff\xc0\x00\x02\xff\xd9"],
    ids=["not jpeg", "cut in a segment", "no scan"],
)
def test_what_it_cannot_read_whole_it_leaves_to_a_fresh_encode(data: bytes) -> None:
    with pytest.raises(jpegclean.NotPlain):
        jpegclean.without_metadata(data)
