"""Every picture a member's phone or camera makes: which formats go to the API as they
are, which are converted first, and what is refused. Real files, made here with Pillow
and pillow-heif."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from bot.errors import BadInput
from bot.images import (
    MAX_FRAMES,
    ImageInfo,
    InvalidImage,
    check_input,
    input_for_api,
    inspect_input,
    prepare_for_api,
    sniff_image,
)
from tests.helpers import (
    EXIF_GPS_IFD,
    make_animation,
    make_exif_image,
    make_heic_bomb,
    make_image,
    make_input_image,
    make_mpo,
    make_noise_image,
    open_image,
)

MAX_BYTES = 20 * 1024 * 1024
URL = "https://cdn.discordapp.com/attachments/1/2/photo"

# Pillow's name for each format the API cannot take, and what the bot calls it.
CONVERTED = [("HEIF", "heic", "HEIC"), ("AVIF", "avif", "AVIF"), ("TIFF", "tiff", "TIFF"),
             ("BMP", "bmp", "BMP")]  # fmt: skip
CONVERTED_IDS = [c[2] for c in CONVERTED]


def decoded(b64: str) -> bytes:
    return base64.b64decode(b64, validate=True)


def make_rgba(width: int, height: int, fmt: str) -> bytes:
    img = Image.new("RGBA", (width, height), (1, 2, 3, 0))
    img.paste((250, 10, 10, 255), (0, 0, width // 2, height))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


# ---------------------------------------------------------------------- check_input
# (Which content type or extension names each format: test_images.py.)


def test_check_input_lets_a_converted_format_through_when_discord_gives_no_size() -> None:
    # Discord does not measure every format it stores; the bytes are measured after download.
    image = make_input_image(content_type="image/heic", filename="a.heic", width=None, height=None)
    assert check_input(image, MAX_BYTES) == "heic"


def test_check_input_still_needs_discords_size_for_a_format_sent_as_is() -> None:
    with pytest.raises(BadInput, match="could not read that file"):
        check_input(make_input_image(width=None, height=None), MAX_BYTES)


def test_check_input_applies_the_size_and_side_caps_to_converted_formats() -> None:
    heic = {"content_type": "image/heic", "filename": "a.heic"}
    with pytest.raises(BadInput, match="limit is 20 MB"):
        check_input(make_input_image(size=MAX_BYTES + 1, **heic), MAX_BYTES)
    with pytest.raises(BadInput, match="8192 px or less"):
        check_input(make_input_image(width=20000, height=20000, **heic), MAX_BYTES)


def test_check_input_names_every_accepted_format_when_refusing() -> None:
    with pytest.raises(BadInput) as info:
        check_input(make_input_image(content_type="image/svg+xml"), MAX_BYTES)
    for name in ("JPEG", "PNG", "GIF", "WebP", "HEIC", "AVIF", "TIFF", "BMP"):
        assert name in info.value.message


# ---------------------------------------------------------------------- inspect_input


def test_an_mpo_is_a_jpeg() -> None:
    data = make_mpo(300, 200)
    assert Image.open(io.BytesIO(data)).format == "MPO"  # what Pillow calls it
    assert inspect_input(data) == ImageInfo("jpeg", 300, 200, 2)


def test_an_apng_is_a_png() -> None:
    assert inspect_input(make_animation(3, size=(80, 80))) == ImageInfo("png", 80, 80, 3)


@pytest.mark.parametrize(("pil_format", "fmt", "label"), CONVERTED, ids=CONVERTED_IDS)
def test_inspect_input_identifies_each_converted_format(
    pil_format: str, fmt: str, label: str
) -> None:
    info = inspect_input(make_image(300, 200, pil_format))
    assert info == ImageInfo(fmt, 300, 200, 1)
    assert info.needs_conversion and info.label == label


def test_a_heif_that_is_not_hevc_is_called_heif() -> None:
    data = bytearray(make_image(300, 200, "HEIF"))
    assert data[8:12] == b"heic"
    data[8:12] = b"mif1"  # the generic HEIF brand
    assert inspect_input(bytes(data)).label == "HEIF"


def test_formats_the_api_takes_need_no_conversion() -> None:
    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        assert not inspect_input(make_image(100, 100, fmt)).needs_conversion
    assert not inspect_input(make_mpo(100, 100)).needs_conversion


def test_results_from_the_api_must_still_be_a_format_it_sends() -> None:
    # sniff_image checks what the API sends back: a HEIC there is still refused.
    with pytest.raises(InvalidImage, match="unsupported image format"):
        sniff_image(make_image(100, 100, "HEIF"))
    assert sniff_image(make_mpo(100, 100)).format == "jpeg"


def test_a_heic_bomb_is_refused_before_it_is_decoded() -> None:
    bomb = make_heic_bomb(20000, 20000)
    assert len(bomb) < 10_000  # tiny on the wire, 400 MP if decoded
    with pytest.raises(BadInput, match="not a readable image"):
        inspect_input(bomb)


def test_a_heic_claiming_more_pixels_than_the_side_cap_is_refused() -> None:
    with pytest.raises(BadInput):
        inspect_input(make_heic_bomb(9000, 6000))


@pytest.mark.parametrize("keep", [0.5, 0.97], ids=["half", "tail-cut"])
def test_a_truncated_heic_is_refused(keep: float) -> None:
    data = make_noise_image(256, 256, "HEIF")
    with pytest.raises(BadInput, match=r"not a readable image|damaged or truncated"):
        inspect_input(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "data",
    [make_image(100, 100, "PPM"), make_image(100, 100, "TGA"), make_image(100, 100, "ICO")],
    ids=["ppm", "tga", "ico"],
)
def test_a_format_pillow_reads_but_the_bot_does_not_take_is_refused(data: bytes) -> None:
    with pytest.raises(BadInput, match="not a readable image"):
        inspect_input(data)


def test_converted_formats_keep_the_frame_cap() -> None:
    pages = make_animation(MAX_FRAMES + 1, size=(64, 64), fmt="TIFF")
    with pytest.raises(BadInput, match="1,001 frames"):
        inspect_input(pages)


# ---------------------------------------------------------------------- conversion


@pytest.mark.parametrize(("pil_format", "fmt", "label"), CONVERTED, ids=CONVERTED_IDS)
def test_each_converted_format_becomes_a_clean_jpeg_downscaled(
    pil_format: str, fmt: str, label: str
) -> None:
    data = make_image(2000, 1500, pil_format)
    out = open_image(decoded(prepare_for_api(data, 1.0)))
    assert out.format == "JPEG" and out.mode == "RGB"
    w, h = out.size
    assert 950_000 < w * h <= 1_000_000
    assert abs(w / h - 4 / 3) < 0.01
    # The picture survives: top-left blue, bottom-right red.
    r, _g, b = out.getpixel((10, 10))
    assert b > 180 and r < 60
    r, _g, b = out.getpixel((w - 10, h - 10))
    assert r > 180 and b < 60


@pytest.mark.parametrize("pil_format", ["HEIF", "AVIF", "TIFF"])
def test_conversion_applies_exif_orientation_and_strips_exif(pil_format: str) -> None:
    data = make_exif_image(200, 100, orientation=6, fmt=pil_format)
    assert open_image(data).getexif().get_ifd(EXIF_GPS_IFD)  # the input really has GPS
    raw = decoded(prepare_for_api(data, 2.0))
    out = open_image(raw)
    # Orientation 6 = rotate 90 degrees clockwise: the stored 200x100 is shown 100x200.
    assert out.size == (100, 200)
    r, g, b = out.convert("RGB").getpixel((95, 5))  # the marker stored top-left, now top-right
    assert r > 200 and g > 200 and b < 60
    assert dict(out.getexif()) == {}
    assert b"SecretCam" not in raw


@pytest.mark.parametrize("pil_format", ["HEIF", "AVIF", "TIFF"])
def test_conversion_keeps_transparency_as_png(pil_format: str) -> None:
    out = open_image(decoded(prepare_for_api(make_rgba(120, 80, pil_format), 2.0)))
    assert out.format == "PNG" and out.mode == "RGBA"
    assert out.getpixel((110, 40))[3] == 0
    r, _g, _b, a = out.getpixel((10, 40))
    assert r > 200 and a == 255


def test_conversion_keeps_the_first_page_of_a_tiff() -> None:
    data = make_animation(3, size=(80, 80), fmt="TIFF", colours=((255, 0, 0), (0, 0, 255)))
    out = open_image(decoded(prepare_for_api(data, 2.0)))
    r, _g, b = out.getpixel((40, 40))
    assert r > 200 and b < 60


def test_a_16_bit_tiff_keeps_its_tones() -> None:
    out = io.BytesIO()
    Image.new("I;16", (100, 100), 32768).save(out, "TIFF")  # mid-grey in 16 bits
    grey = open_image(decoded(prepare_for_api(out.getvalue(), 2.0))).getpixel((50, 50))
    assert all(120 <= c <= 136 for c in grey), grey


# ---------------------------------------------------------------------- input_for_api


@pytest.mark.parametrize("send_url", [True, False], ids=["url", "base64"])
def test_an_mpo_goes_as_a_jpeg_in_either_mode(send_url: bool) -> None:
    got = input_for_api(make_mpo(300, 200), URL, send_url=send_url, max_megapixels=2.0)
    assert got.converted_from is None
    if send_url:
        assert (got.value, got.mode) == (URL, "url")
    else:
        assert got.mode == "base64"
        out = open_image(decoded(got.value))
        assert out.format == "JPEG" and out.size == (300, 200)
        assert getattr(out, "n_frames", 1) == 1


@pytest.mark.parametrize("send_url", [True, False], ids=["url", "base64"])
@pytest.mark.parametrize(("pil_format", "fmt", "label"), CONVERTED, ids=CONVERTED_IDS)
def test_a_converted_format_is_sent_as_base64_even_in_url_mode(
    pil_format: str, fmt: str, label: str, send_url: bool
) -> None:
    got = input_for_api(make_image(300, 200, pil_format), URL, send_url=send_url, max_megapixels=2)
    assert got.mode == "base64" and got.converted_from == label
    assert open_image(decoded(got.value)).format == "JPEG"


def test_the_bytes_decide_not_the_name() -> None:
    # A HEIC that Discord was told is a JPEG is still converted: the API could not read it.
    got = input_for_api(make_image(300, 200, "HEIF"), URL, send_url=True, max_megapixels=2.0)
    assert got.mode == "base64" and got.converted_from == "HEIC"


def test_every_check_runs_before_conversion() -> None:
    with pytest.raises(BadInput, match="not a readable image"):
        input_for_api(make_heic_bomb(), URL, send_url=True, max_megapixels=2.0)
    with pytest.raises(BadInput, match="at least 64 px"):
        input_for_api(make_image(40, 40, "BMP"), URL, send_url=True, max_megapixels=2.0)
