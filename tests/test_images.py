"""Image checks and conversions, with real images and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from aiohttp import web

from bot import images
from bot.errors import BadInput
from bot.images import (
    DISCORD_UPLOAD_LIMIT,
    MAX_FRAMES,
    ImageInfo,
    InvalidImage,
    check_input,
    download,
    fit_for_upload,
    host_allowed,
    prepare_for_api,
    sniff_image,
)
from tests.helpers import (
    EXIF_GPS_IFD,
    LocalServer,
    make_animation,
    make_exif_jpeg,
    make_image,
    make_input_image,
    make_noise_png,
    make_png_bomb,
    make_png_with_text,
    open_image,
    unused_port,
)

MAX_BYTES = 20 * 1024 * 1024
CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


def decoded(b64: str) -> bytes:
    return base64.b64decode(b64, validate=True)


# ---------------------------------------------------------------------- check_input


def test_check_input_accepts_a_normal_png_and_returns_its_format() -> None:
    assert check_input(make_input_image(), MAX_BYTES) == "png"


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("image/jpeg", "jpeg"),
        ("image/jpg", "jpeg"),
        ("image/gif", "gif"),
        ("image/webp", "webp"),
        ("IMAGE/PNG; charset=binary", "png"),
        ("image/apng", "png"),
        # What phones and cameras make: the API gets these converted.
        ("image/heic", "heic"),
        ("image/heif", "heif"),
        ("image/heic-sequence", "heic"),
        ("image/avif", "avif"),
        ("image/tiff", "tiff"),
        ("image/bmp", "bmp"),
        ("image/x-ms-bmp", "bmp"),
    ],
)
def test_check_input_maps_each_accepted_content_type(content_type: str, fmt: str) -> None:
    assert check_input(make_input_image(content_type=content_type), MAX_BYTES) == fmt


@pytest.mark.parametrize(
    "content_type", ["application/pdf", "image/x-icon", "image/svg+xml", "text/plain", "video/mp4"]
)
def test_check_input_refuses_other_content_types_even_with_an_image_name(
    content_type: str,
) -> None:
    with pytest.raises(BadInput, match="JPEG, PNG, GIF, WebP, HEIC, AVIF, TIFF or BMP"):
        check_input(make_input_image(content_type=content_type, filename="x.png"), MAX_BYTES)


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("cat.JPG", "jpeg"),
        ("a.b.webp", "webp"),
        ("IMG_0001.HEIC", "heic"),
        ("a.heif", "heif"),
        ("a.avif", "avif"),
        ("scan.tif", "tiff"),
        ("scan.tiff", "tiff"),
        ("old.bmp", "bmp"),
        ("moving.apng", "png"),
    ],
)
def test_check_input_without_content_type_uses_the_extension(filename: str, fmt: str) -> None:
    image = make_input_image(content_type=None, filename=filename)
    assert check_input(image, MAX_BYTES) == fmt


@pytest.mark.parametrize("filename", ["photo", "photo.svg", "archive.tar.gz", "png"])
def test_check_input_without_content_type_or_known_extension_is_refused(filename: str) -> None:
    with pytest.raises(BadInput, match="JPEG, PNG, GIF, WebP, HEIC, AVIF, TIFF or BMP"):
        check_input(make_input_image(content_type=None, filename=filename), MAX_BYTES)


def test_check_input_accepts_exactly_the_size_limit() -> None:
    assert check_input(make_input_image(size=MAX_BYTES), MAX_BYTES) == "png"


def test_check_input_refuses_a_file_over_the_size_limit() -> None:
    with pytest.raises(BadInput) as info:
        check_input(make_input_image(size=MAX_BYTES + 1), MAX_BYTES)
    assert "limit is 20 MB" in info.value.message


@pytest.mark.parametrize(("width", "height"), [(None, 100), (100, None), (None, None)])
def test_check_input_refuses_missing_dimensions(width: int | None, height: int | None) -> None:
    with pytest.raises(BadInput, match="could not read that file as an image"):
        check_input(make_input_image(width=width, height=height), MAX_BYTES)


@pytest.mark.parametrize(("width", "height"), [(63, 500), (500, 63), (8193, 500), (500, 8193)])
def test_check_input_refuses_sides_outside_64_to_8192(width: int, height: int) -> None:
    with pytest.raises(BadInput) as info:
        check_input(make_input_image(width=width, height=height), MAX_BYTES)
    assert f"{width}x{height}" in info.value.message


@pytest.mark.parametrize(("width", "height"), [(64, 64), (8192, 8192), (64, 8192)])
def test_check_input_accepts_sides_at_64_and_8192(width: int, height: int) -> None:
    assert check_input(make_input_image(width=width, height=height), MAX_BYTES) == "png"


# ---------------------------------------------------------------------- sniff_image


@pytest.mark.parametrize(
    ("fmt", "expected"), [("PNG", "png"), ("JPEG", "jpeg"), ("GIF", "gif"), ("WEBP", "webp")]
)
def test_sniff_image_identifies_each_supported_format(fmt: str, expected: str) -> None:
    info = sniff_image(make_image(300, 200, fmt))
    assert info == ImageInfo(expected, 300, 200, 1)


def test_sniff_image_counts_animation_frames() -> None:
    assert sniff_image(make_animation(5, fmt="GIF")).frames == 5


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"<html><body>nope</body></html>", b"\x89PNG\r\n\x1a\n"],
    ids=["empty", "text", "html", "png-signature-only"],
)
def test_sniff_image_refuses_garbage(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        sniff_image(data)


def test_sniff_image_refuses_a_truncated_png() -> None:
    data = make_noise_png(128, 128)
    with pytest.raises(InvalidImage):
        sniff_image(data[: len(data) // 2])


def test_sniff_image_refuses_an_unsupported_format() -> None:
    with pytest.raises(InvalidImage, match="unsupported image format BMP"):
        sniff_image(make_image(100, 100, "BMP"))


def test_sniff_image_accepts_an_image_inside_the_side_limits_over_33_megapixels() -> None:
    data = make_png_bomb(8192, 4200)  # 34.4 MP, each side within MIN_SIDE_PX..MAX_SIDE_PX
    assert sniff_image(data) == ImageInfo("png", 8192, 4200, 1)


# ---------------------------------------------------------------------- prepare_for_api


def test_prepare_for_api_applies_exif_orientation() -> None:
    data = make_exif_jpeg(200, 100, orientation=6)
    assert open_image(data).size == (200, 100)
    out = open_image(decoded(prepare_for_api(data, 2.0)))
    # Orientation 6 = rotate 90 degrees clockwise: the stored 200x100 is shown 100x200.
    assert out.size == (100, 200)
    # The yellow marker stored top-left is now top-right.
    r, g, b = out.convert("RGB").getpixel((95, 5))
    assert r > 200 and g > 200 and b < 60


def test_prepare_for_api_keeps_only_the_first_gif_frame() -> None:
    data = make_animation(3, size=(80, 80), fmt="GIF", colours=((255, 0, 0), (0, 0, 255)))
    out = open_image(decoded(prepare_for_api(data, 2.0)))
    assert getattr(out, "n_frames", 1) == 1
    r, _g, b = out.convert("RGB").getpixel((40, 40))
    assert r > 200 and b < 60


def test_prepare_for_api_downscales_to_max_megapixels_keeping_aspect() -> None:
    data = make_image(2000, 1500, "JPEG")
    out = open_image(decoded(prepare_for_api(data, 1.0)))
    w, h = out.size
    assert w * h <= 1_000_000
    assert w * h > 950_000
    assert abs(w / h - 4 / 3) < 0.01


def test_prepare_for_api_does_not_upscale_small_images() -> None:
    out = open_image(decoded(prepare_for_api(make_image(300, 200), 2.0)))
    assert out.size == (300, 200)


def test_prepare_for_api_strips_exif_and_gps() -> None:
    data = make_exif_jpeg()
    assert open_image(data).getexif().get_ifd(EXIF_GPS_IFD)  # the input really has GPS
    raw = decoded(prepare_for_api(data, 2.0))
    out = open_image(raw)
    assert out.format == "JPEG"
    assert "exif" not in out.info
    assert dict(out.getexif()) == {}
    assert b"SecretCam" not in raw
    assert b"Exif\x00\x00" not in raw


@pytest.mark.parametrize("rgba", [False, True], ids=["rgb", "rgba"])
def test_prepare_for_api_strips_png_text_chunks(rgba: bool) -> None:
    data = make_png_with_text(rgba=rgba)
    assert "Comment" in open_image(data).info
    raw = decoded(prepare_for_api(data, 2.0))
    out = open_image(raw)
    assert b"secret" not in raw
    assert not any(k in out.info for k in ("Comment", "XML:com.adobe.xmp", "xmp", "exif"))
    assert b"tEXt" not in raw
    assert b"iTXt" not in raw


def test_prepare_for_api_keeps_transparency_as_png() -> None:
    out = open_image(decoded(prepare_for_api(make_png_with_text(rgba=True), 2.0)))
    assert out.format == "PNG"
    assert out.mode == "RGBA"
    assert out.getpixel((10, 10)) == (1, 2, 3, 100)


def test_prepare_for_api_sends_opaque_images_as_jpeg() -> None:
    out = open_image(decoded(prepare_for_api(make_image(200, 200, "WEBP"), 2.0)))
    assert out.format == "JPEG"
    assert out.mode == "RGB"


def test_prepare_for_api_refuses_a_decompression_bomb() -> None:
    bomb = make_png_bomb(20000, 20000)
    assert len(bomb) < 100_000  # tiny on the wire, 400 MP once decoded
    with pytest.raises(BadInput):
        prepare_for_api(bomb, 2.0)


def test_prepare_for_api_refuses_a_truncated_jpeg() -> None:
    data = make_image(512, 512, "JPEG")
    with pytest.raises(BadInput, match="damaged or truncated"):
        prepare_for_api(data[: len(data) // 2], 2.0)


def test_prepare_for_api_refuses_a_truncated_png() -> None:
    data = make_noise_png(128, 128)
    with pytest.raises(BadInput, match="not a readable image"):
        prepare_for_api(data[: len(data) // 2], 2.0)


def test_prepare_for_api_refuses_non_images() -> None:
    with pytest.raises(BadInput, match="not a readable image"):
        prepare_for_api(b"%PDF-1.7 not an image", 2.0)


def test_prepare_for_api_checks_the_real_dimensions() -> None:
    # Discord's width/height are a claim; the decoded size is what counts.
    with pytest.raises(BadInput, match="40x40"):
        prepare_for_api(make_image(40, 40), 2.0)


def test_prepare_for_api_refuses_animations_over_the_frame_limit() -> None:
    with pytest.raises(BadInput, match="1,001 frames"):
        prepare_for_api(make_animation(MAX_FRAMES + 1), 2.0)


def test_prepare_for_api_accepts_animations_at_the_frame_limit() -> None:
    out = open_image(decoded(prepare_for_api(make_animation(MAX_FRAMES), 2.0)))
    assert out.size == (64, 64)


# ---------------------------------------------------------------------- fit_for_upload


def test_fit_for_upload_leaves_a_small_result_untouched() -> None:
    data = make_image(256, 256, "PNG")
    up = fit_for_upload(data, "png", DISCORD_UPLOAD_LIMIT)
    assert up.data is data
    assert up.extension == "png"
    assert up.reencoded is False


def test_fit_for_upload_accepts_exactly_the_limit() -> None:
    data = make_image(256, 256, "PNG")
    up = fit_for_upload(data, "png", len(data))
    assert up.data is data
    assert up.reencoded is False


def test_fit_for_upload_reencodes_an_oversized_result_as_jpeg_under_the_limit() -> None:
    data = make_noise_png(512, 512)
    limit = 200_000
    assert len(data) > limit
    up = fit_for_upload(data, "png", limit)
    assert up.reencoded is True
    assert up.extension == "jpg"
    assert len(up.data) <= limit
    out = open_image(up.data)
    assert out.format == "JPEG"
    assert out.width >= 64


# ---------------------------------------------------------------------- host_allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        # Discord's CDN, however the URL spells it.
        ("https://cdn.discordapp.com/attachments/1/2/a.png", True),
        ("https://media.discordapp.net/attachments/1/2/a.png?ex=1&is=2", True),
        ("https://CDN.DiscordApp.com/a.png", True),
        ("http://cdn.discordapp.com/a.png", True),
        ("https://cdn.discordapp.com:443/a.png", True),
        ("https://evil.com@cdn.discordapp.com/a.png", True),
        # Other hosts and schemes, and userinfo tricks.
        ("https://evil.com/a.png", False),
        ("https://cdn.discordapp.com@evil.com/a.png", False),
        ("https://cdn.discordapp.com:pw@evil.com/a.png", False),
        ("https://cdn.discordapp.com.evil.com/a.png", False),
        ("https://evilcdn.discordapp.com/a.png", False),
        ("https://discordapp.com/a.png", False),
        ("ftp://cdn.discordapp.com/a.png", False),
        ("file://cdn.discordapp.com/etc/passwd", False),
        ("javascript://cdn.discordapp.com/%0aalert(1)", False),
        ("data:image/png;base64,AAAA", False),
        ("cdn.discordapp.com/a.png", False),
        ("//cdn.discordapp.com/a.png", False),
        ("https:///a.png", False),
        ("", False),
    ],
)
def test_host_allowed_accepts_discord_cdn_urls_and_refuses_other_hosts_schemes_and_tricks(
    url: str, allowed: bool
) -> None:
    assert host_allowed(url, CDN_HOSTS) is allowed


def test_host_allowed_host_port_entry_matches_only_that_port() -> None:
    allowed = ("127.0.0.1:8080",)
    assert host_allowed("http://127.0.0.1:8080/a.png", allowed) is True
    assert host_allowed("http://127.0.0.1:9090/a.png", allowed) is False
    assert host_allowed("http://127.0.0.1/a.png", allowed) is False


def test_host_allowed_plain_host_entry_matches_any_port() -> None:
    assert host_allowed("https://cdn.discordapp.com:8443/a.png", CDN_HOSTS) is True


@pytest.mark.parametrize(
    "url", ["https://cdn.discordapp.com:99999/a.png", "https://cdn.discordapp.com:abc/a.png"]
)
def test_host_allowed_refuses_a_url_with_an_invalid_port(url: str) -> None:
    assert host_allowed(url, CDN_HOSTS) is False


# ---------------------------------------------------------------------- download


async def test_download_fetches_from_an_allowed_host(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    data = make_image(100, 100)
    url = local_server.serve_bytes("/a.png", data)
    got = await download(http, url, max_bytes=MAX_BYTES, allowed_hosts=(local_server.host,))
    assert got == data
    assert local_server.hits == ["/a.png"]


async def test_download_from_a_host_not_allowed_sends_no_request(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    url = local_server.serve_bytes("/a.png", make_image(100, 100))
    with pytest.raises(BadInput, match="uploaded to Discord"):
        await download(http, url, max_bytes=MAX_BYTES, allowed_hosts=CDN_HOSTS)
    assert local_server.hits == []


async def test_download_refuses_a_stream_over_the_cap_without_content_length(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    max_bytes = 64 * 1024

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(64):  # 1 MiB in 16 KiB chunks, far past the cap
                await resp.write(b"\x00" * 16384)
                await asyncio.sleep(0)
        except ConnectionError:
            pass  # the client hung up, as it should
        return resp

    url = local_server.route("/big", chunked)
    with pytest.raises(BadInput, match="over the"):
        await download(http, url, max_bytes=max_bytes, allowed_hosts=(local_server.host,))
    assert local_server.hits == ["/big"]


async def test_download_refuses_a_declared_content_length_over_the_cap_before_reading(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    async def declares_huge(request: web.Request) -> web.StreamResponse:
        # Claims 1 GB but sends a few bytes: only a client that trusts the header stops at once.
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = 1_000_000_000
        await resp.prepare(request)
        await resp.write(b"\x89PNG")
        await asyncio.sleep(0.3)
        return resp

    url = local_server.route("/huge", declares_huge)
    with pytest.raises(BadInput, match="over the 1 MB limit"):
        await download(http, url, max_bytes=1024 * 1024, allowed_hosts=(local_server.host,))


async def test_download_refuses_an_honest_content_length_over_the_cap(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    url = local_server.serve_bytes("/big.png", b"\x00" * 5000)
    with pytest.raises(BadInput, match="over the"):
        await download(http, url, max_bytes=4999, allowed_hosts=(local_server.host,))


async def test_download_accepts_exactly_the_cap(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    url = local_server.serve_bytes("/exact.png", b"\x01" * 5000)
    got = await download(http, url, max_bytes=5000, allowed_hosts=(local_server.host,))
    assert len(got) == 5000


async def test_download_404_is_a_friendly_bad_input(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    with pytest.raises(BadInput, match="may have expired"):
        await download(
            http,
            local_server.url("/gone.png"),
            max_bytes=MAX_BYTES,
            allowed_hosts=(local_server.host,),
        )
    assert local_server.hits == ["/gone.png"]


async def test_download_does_not_follow_redirects(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    local_server.serve_bytes("/a.png", make_image(100, 100))

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(local_server.url("/a.png"))

    url = local_server.route("/r", redirect)
    with pytest.raises(BadInput):
        await download(http, url, max_bytes=MAX_BYTES, allowed_hosts=(local_server.host,))
    assert local_server.hits == ["/r"]


async def test_download_connection_refused_is_a_friendly_bad_input(
    http: httpx.AsyncClient,
) -> None:
    port = unused_port()
    with pytest.raises(BadInput, match="could not download that image"):
        await download(
            http,
            f"http://127.0.0.1:{port}/a.png",
            max_bytes=MAX_BYTES,
            allowed_hosts=(f"127.0.0.1:{port}",),
        )


async def test_download_without_allow_list_fetches_any_host(
    local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    # The CLI passes None: the operator chose the URL.
    data = make_image(80, 80, "JPEG")
    url = local_server.serve_bytes("/op.jpg", data, content_type="image/jpeg")
    assert await download(http, url, max_bytes=MAX_BYTES, allowed_hosts=None) == data


def test_extension_for_follows_the_bytes() -> None:
    assert images.extension_for(sniff_image(make_image(100, 100, "JPEG"))) == "jpg"
    assert images.extension_for(sniff_image(make_image(100, 100, "WEBP"))) == "webp"
