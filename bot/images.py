"""Image checks and conversions: what the API can take, and what Discord can carry."""

from __future__ import annotations

import base64
import io
import logging
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import BadInput

log = logging.getLogger(__name__)

# HEIC/HEIF is read through libheif: Pillow has no reader of its own. AVIF is Pillow's own.
# Only the main picture is ever read, so thumbnails, depth and auxiliary images are skipped.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

MIN_SIDE_PX = 64
MAX_SIDE_PX = 8192
MAX_FRAMES = 1000
DISCORD_UPLOAD_LIMIT = 10 * 1024 * 1024
# Decompression-bomb guard: `_open` turns Pillow's warning past this many pixels into a refusal.
Image.MAX_IMAGE_PIXELS = MAX_SIDE_PX * MAX_SIDE_PX

# What the API takes as it is (the contract); anything else accepted is converted first.
API_FORMATS = frozenset({"jpeg", "png", "gif", "webp"})
CONVERTED_LABELS = {"heic": "HEIC", "heif": "HEIF", "avif": "AVIF", "tiff": "TIFF", "bmp": "BMP"}
ACCEPTED_FORMATS_TEXT = "JPEG, PNG, GIF, WebP, HEIC, AVIF, TIFF or BMP"

ACCEPTED_TYPES = {
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/png": "png",
    "image/apng": "png",  # an animated PNG is a PNG: its first frame is the picture
    "image/gif": "gif",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heic-sequence": "heic",
    "image/heif": "heif",
    "image/heif-sequence": "heif",
    "image/avif": "avif",
    "image/tiff": "tiff",
    "image/bmp": "bmp",
    "image/x-bmp": "bmp",
    "image/x-ms-bmp": "bmp",
}
_EXTENSIONS = {
    **{ext: "jpeg" for ext in ("jpg", "jpeg", "jfif")},
    **{ext: "png" for ext in ("png", "apng")},
    **{ext: "heic" for ext in ("heic", "heics")},
    **{ext: "heif" for ext in ("heif", "heifs", "hif")},
    **{ext: "tiff" for ext in ("tif", "tiff")},
    **{ext: ext for ext in ("gif", "webp", "avif", "bmp")},
}
# Pillow's names for what the API takes. An MPO (multi-shot and 3D cameras, some phones)
# is a JPEG with a picture index appended: every JPEG decoder reads its first picture.
PIL_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
# Pillow's names for what the bot can read safely but the API cannot take.
_CONVERTIBLE = {"HEIF": "heif", "AVIF": "avif", "TIFF": "tiff", "BMP": "bmp"}
# HEIF brands whose pictures are HEVC-coded: what phones save and name .heic.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
OUTPUT_MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_SAVE_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


class InvalidImage(ValueError):
    """Bytes that are not a usable image."""


@dataclass(frozen=True)
class ImageInfo:
    format: str  # jpeg, png, gif, webp; or one converted first: heic, heif, avif, tiff, bmp
    width: int
    height: int
    frames: int = 1

    @property
    def needs_conversion(self) -> bool:
        """True when the API cannot take these bytes as they are."""
        return self.format not in API_FORMATS

    @property
    def label(self) -> str:
        """The format's name as a member knows it ("HEIC")."""
        return CONVERTED_LABELS.get(self.format, self.format.upper())


@dataclass(frozen=True, slots=True)
class InputImage:
    """An image a member pointed at, as Discord described it (not yet downloaded)."""

    url: str
    filename: str
    content_type: str | None
    size: int
    width: int | None
    height: int | None
    attachment_id: int | None = None


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidImage("image has too many pixels") from exc
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InvalidImage("not a readable image") from exc


def sniff_image(data: bytes) -> ImageInfo:
    """Identify and structurally verify an image the API takes (jpeg, png, gif, webp)
    without decoding all its pixels."""
    return _identify(data, convertible=False)


def identify(data: bytes) -> ImageInfo:
    """Like `sniff_image`, for any format a member may send, converted ones included."""
    return _identify(data, convertible=True)


def _identify(data: bytes, *, convertible: bool) -> ImageInfo:
    img = _open(data)  # reads the header only: the bomb guard runs before any decoding
    fmt = PIL_FORMATS.get(img.format or "")
    if fmt is None and convertible:
        fmt = _CONVERTIBLE.get(img.format or "")
        if fmt == "heif" and data[8:12] in _HEIC_BRANDS:
            fmt = "heic"
    if fmt is None:
        raise InvalidImage(f"unsupported image format {img.format}")
    info = ImageInfo(fmt, img.width, img.height, getattr(img, "n_frames", 1))
    try:
        img.verify()
    except Exception as exc:
        raise InvalidImage("corrupt image data") from exc
    return info


def format_of(content_type: str | None, filename: str) -> str | None:
    """The format a file claims to be, by its type or else its name; None if not accepted."""
    if content_type:
        return ACCEPTED_TYPES.get(content_type.split(";")[0].strip().lower())
    return _EXTENSIONS.get(filename.rsplit(".", 1)[-1].lower()) if "." in filename else None


def _check_dimensions(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE_PX:
        raise BadInput(
            f"That image is {width}x{height}; each side needs at least {MIN_SIDE_PX} px."
        )
    if max(width, height) > MAX_SIDE_PX:
        raise BadInput(
            f"That image is {width}x{height}; each side must be {MAX_SIDE_PX} px or less."
        )


def check_input(image: InputImage, max_bytes: int) -> str:
    """Refuse, before anything is spent, what the API cannot take; returns the format."""
    fmt = format_of(image.content_type, image.filename)
    if fmt is None:
        raise BadInput(f"Please attach an image: {ACCEPTED_FORMATS_TEXT}.")
    if image.size > max_bytes:
        raise BadInput(
            f"That image is {image.size / 1048576:.1f} MB; the limit is {max_bytes / 1048576:g} MB."
        )
    if image.width is None or image.height is None:
        if fmt not in API_FORMATS:
            # Discord does not measure every format it stores; the downloaded bytes are.
            return fmt
        raise BadInput("Discord could not read that file as an image. Please attach a real image.")
    _check_dimensions(image.width, image.height)
    return fmt


def host_allowed(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    """True when `url` is http(s) on one of the allowed hosts (host or host:port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return False
    try:
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return False
    host = parts.hostname.lower()
    netloc = f"{host}:{port}" if port else host
    return host in allowed_hosts or netloc in allowed_hosts


async def download(
    http: httpx.AsyncClient, url: str, *, max_bytes: int, allowed_hosts: tuple[str, ...] | None
) -> bytes:
    """Stream an image from an allowed host, refusing anything over `max_bytes`."""
    if allowed_hosts is not None and not host_allowed(url, allowed_hosts):
        raise BadInput("I can only fetch images that were uploaded to Discord.")
    too_big = BadInput(f"That image is over the {max_bytes / 1048576:g} MB limit.")
    try:
        async with http.stream("GET", url, follow_redirects=False) as resp:
            if resp.status_code != 200:
                raise BadInput("I could not download that image (it may have expired).")
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise too_big
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise too_big
    except httpx.HTTPError as exc:
        log.warning("Image download failed: %s", type(exc).__name__)
        raise BadInput("I could not download that image. Please try again.") from None
    return bytes(data)


def inspect_input(data: bytes) -> ImageInfo:
    """Prove downloaded bytes are an image the bot can use: an accepted format (whatever
    the name says), sane size, not a bomb, not truncated. CPU-bound: call it in a thread."""
    return _inspect(data)[0]


def _inspect(data: bytes) -> tuple[ImageInfo, Image.Image]:
    """`inspect_input`, also returning the decoded first frame (a JPEG's at 1/8 scale)."""
    try:
        info = identify(data)
    except InvalidImage:
        raise BadInput("That file is not a readable image.") from None
    _check_dimensions(info.width, info.height)
    if info.frames > MAX_FRAMES:
        raise BadInput(f"That animation has {info.frames:,} frames; I accept up to {MAX_FRAMES:,}.")
    try:
        img = _open(data)
        # A JPEG decodes at 1/8 scale just as strictly (every byte is still parsed), faster.
        img.draft("RGB", (max(1, info.width // 8), max(1, info.height // 8)))
        img.load()  # decodes the first frame: catches truncated data
    except (InvalidImage, OSError, ValueError, SyntaxError) as exc:
        raise BadInput("That image is damaged or truncated.") from exc
    return info, img


@dataclass(frozen=True)
class ApiInput:
    """What the API gets as `input_image`, and how the member's file got there."""

    value: str  # the file's URL, or base64 of a clean JPEG or PNG
    mode: str  # url or base64
    converted_from: str | None = None  # the format's name when the API could not take it


def input_for_api(data: bytes, url: str, *, send_url: bool, max_megapixels: float) -> ApiInput:
    """Check downloaded bytes, then choose what the API gets: the URL when `send_url` and
    the API can read the file as it is, else cleaned base64 (always for a format the API
    cannot take). Every check runs before any conversion. CPU-bound: call it in a thread."""
    info, first_frame = _inspect(data)
    if send_url and not info.needs_conversion:
        return ApiInput(url, "url")
    encoded = _encode_for_api(data, info, first_frame, max_megapixels)
    return ApiInput(encoded, "base64", info.label if info.needs_conversion else None)


def prepare_for_api(data: bytes, max_megapixels: float) -> str:
    """Decode, normalise and re-encode an input image; returns base64 for the API.

    Applies EXIF orientation, keeps the first frame of an animation, downscales to
    `max_megapixels` and drops all metadata. CPU-bound: call it in a thread.
    """
    info, first_frame = _inspect(data)
    return _encode_for_api(data, info, first_frame, max_megapixels)


def _encode_for_api(
    data: bytes, info: ImageInfo, first_frame: Image.Image, max_megapixels: float
) -> str:
    limit = max_megapixels * 1_000_000
    try:
        if info.format == "jpeg":
            # Inspected at 1/8 scale: decode again, straight at the size needed (no
            # full-size copy in memory when it is to be downscaled).
            img = _open(data)
            img.seek(0)
            if info.width * info.height > limit:
                scale = (limit / (info.width * info.height)) ** 0.5
                img.draft("RGB", (int(info.width * scale) + 1, int(info.height * scale) + 1))
        else:
            img = first_frame  # already decoded, in full: no second decode
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I;16"):
            # 16-bit greys (scanners, some TIFFs): scale to 8 bits rather than clip to white.
            img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
        has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    except (InvalidImage, OSError, ValueError) as exc:
        raise BadInput("That image is damaged or truncated.") from exc
    if img.width * img.height > limit:
        scale = (limit / (img.width * img.height)) ** 0.5
        size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # A fresh encode carries no EXIF, GPS or text chunks from the upload.
    if has_alpha:
        img.save(out, "PNG", optimize=False)
    else:
        img.save(out, "JPEG", quality=92)
    return base64.b64encode(out.getvalue()).decode("ascii")


@dataclass(frozen=True)
class UploadImage:
    data: bytes
    extension: str  # png, jpg or webp
    reencoded: bool


def fit_for_upload(data: bytes, extension: str, limit: int) -> UploadImage:
    """Make the result fit Discord's upload limit, re-encoding as JPEG only when needed.

    CPU-bound: call it in a thread.
    """
    if len(data) <= limit:
        return UploadImage(data, extension, reencoded=False)
    img = _open(data)
    img = img.convert("RGB")
    for quality in (90, 80, 70):
        out = _encode_jpeg(img, quality)
        if len(out) <= limit:
            return UploadImage(out, "jpg", reencoded=True)
    while True:
        img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)))
        out = _encode_jpeg(img, 80)
        if len(out) <= limit or img.width <= MIN_SIDE_PX:
            return UploadImage(out, "jpg", reencoded=True)


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def extension_for(info: ImageInfo) -> str:
    """The file extension matching the bytes (the API's Content-Type is not trusted)."""
    return {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}[info.format]


def side_by_side(before: bytes, after: bytes, *, height: int = 512) -> bytes:
    """A labelled before/after PNG of two images scaled to the same height.

    CPU-bound: call it in a thread.
    """
    from PIL import ImageDraw

    panels = []
    for data in (before, after):
        img = ImageOps.exif_transpose(_open(data))
        img.seek(0)
        img = img.convert("RGB")
        width = max(1, round(img.width * height / img.height))
        panels.append(img.resize((width, height), Image.Resampling.LANCZOS))
    label_h, gap = 28, 8
    canvas = Image.new(
        "RGB", (panels[0].width + gap + panels[1].width, height + label_h), (32, 34, 37)
    )
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, panel in zip(("Before", "After"), panels, strict=True):
        canvas.paste(panel, (x, label_h))
        draw.text((x + 8, 7), label, fill=(240, 240, 240))
        x += panel.width + gap
    out = io.BytesIO()
    canvas.save(out, "PNG")
    return out.getvalue()
