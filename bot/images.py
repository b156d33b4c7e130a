"""Image checks and conversions: what the API can take, and what Discord can carry."""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass

import pillow_heif
from PIL import Image

from bot import jpegclean, pngcheck
from bot.decoding import InvalidImage as InvalidImage
from bot.decoding import draft_at_least, open_image, orientation, oriented, shrunk
from bot.decoding import side_by_side as side_by_side
from bot.errors import BadInput
from bot.fetch import download as download
from bot.fetch import host_allowed as host_allowed

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


_open = open_image


def sniff_image(data: bytes) -> ImageInfo:
    """Identify and structurally verify an image the API takes (jpeg, png, gif, webp)
    without decoding all its pixels."""
    return _identify(data, convertible=False)


def identify(data: bytes) -> ImageInfo:
    """Like `sniff_image`, for any format a member may send, converted ones included."""
    return _identify(data, convertible=True)


def _identify(data: bytes, *, convertible: bool, verified: bool = False) -> ImageInfo:
    img = _open(data)  # reads the header only: the bomb guard runs before any decoding
    fmt = PIL_FORMATS.get(img.format or "")
    if fmt is None and convertible:
        fmt = _CONVERTIBLE.get(img.format or "")
        if fmt == "heif" and data[8:12] in _HEIC_BRANDS:
            fmt = "heic"
    if fmt is None:
        raise InvalidImage(f"unsupported image format {img.format}")
    info = ImageInfo(fmt, img.width, img.height, getattr(img, "n_frames", 1))
    if verified:
        return info  # a plain PNG whose chunk checksums pngcheck already checked
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


def check_input(image: InputImage, max_bytes: int, *, max_megapixels: float | None = None) -> str:
    """Refuse, before anything is spent, what the API cannot take; returns the format.
    `max_megapixels`: refuse a picture Discord measured as larger than that."""
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
    check_megapixels(image.width, image.height, max_megapixels)
    return fmt


def check_megapixels(width: int, height: int, max_megapixels: float | None) -> None:
    """Refuse a picture with more pixels than the bot decodes (None = no cap)."""
    if max_megapixels is not None and width * height > max_megapixels * 1_000_000:
        raise BadInput(
            f"That image is {width}x{height} ({width * height / 1e6:.1f} megapixels); I accept "
            f"up to {max_megapixels:g} megapixels. Please send a smaller picture. "
            "Nothing was charged."
        )


def inspect_input(data: bytes, *, max_megapixels: float | None = None) -> ImageInfo:
    """Prove downloaded bytes are an image the bot can use: an accepted format (whatever
    the name says), sane size, not a bomb, not truncated. CPU-bound: call it in a thread."""
    info = _checked_header(data, max_megapixels)
    _prove_decodes(data, info)
    return info


def _checked_header(
    data: bytes, max_megapixels: float | None, png: pngcheck.PngStream | None = None
) -> ImageInfo:
    """Every check the header (and the chunk checksums) can answer, before any pixel.
    `png`: a plain PNG's stream check, whose checksums stand for Pillow's verify()."""
    verified = png is not None and png.verified and pngcheck.is_plain_png(data)
    try:
        info = _identify(data, convertible=True, verified=verified)
    except InvalidImage:
        raise BadInput("That file is not a readable image.") from None
    _check_dimensions(info.width, info.height)
    check_megapixels(info.width, info.height, max_megapixels)
    if info.frames > MAX_FRAMES:
        raise BadInput(f"That animation has {info.frames:,} frames; I accept up to {MAX_FRAMES:,}.")
    return info


def _prove_decodes(data: bytes, info: ImageInfo, png: pngcheck.PngStream | None = None) -> None:
    """Catch truncated or corrupt picture data without keeping (or, for a PNG, building)
    the pixels: a plain PNG's data is streamed through zlib row by row; a JPEG decodes at
    1/8 scale just as strictly (every byte is still parsed); others decode their first frame."""
    damaged = BadInput("That image is damaged or truncated.")
    if info.format == "png" and pngcheck.is_plain_png(data):
        try:
            if png is not None and png.decided:
                png.verdict()  # already checked in one pass over the file (_one_pass)
            else:
                pngcheck.check_png(data)
        except pngcheck.BrokenPng as exc:
            raise damaged from exc
        return
    try:
        img = _open(data)
        img.draft("RGB", (max(1, info.width // 8), max(1, info.height // 8)))
        img.load()
    except (InvalidImage, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise damaged from exc


@dataclass(frozen=True)
class ApiInput:
    """What the API gets as `input_image`, and how the member's file got there."""

    value: str  # the file's URL, or base64 of a clean JPEG or PNG
    mode: str  # url or base64
    converted_from: str | None = None  # the format's name when the API could not take it


def input_for_api(
    data: bytes,
    url: str,
    *,
    send_url: bool,
    max_megapixels: float,
    max_accepted_megapixels: float | None = None,
    png: pngcheck.PngStream | None = None,
) -> ApiInput:
    """Check downloaded bytes, then choose what the API gets: the URL when `send_url` and
    the API can read the file as it is, else cleaned base64 (always for a format the API
    cannot take). Every check runs before any conversion. CPU-bound: call it in a thread.
    `png`: the PNG check, if already fed the bytes."""
    if png is None and send_url and pngcheck.is_plain_png(data):
        png = _one_pass(data)
    info = _checked_header(data, max_accepted_megapixels, png)
    if send_url and not info.needs_conversion:
        _prove_decodes(data, info, png)
        return ApiInput(url, "url")
    encoded = _encode_for_api(data, info, max_megapixels)
    return ApiInput(encoded, "base64", info.label if info.needs_conversion else None)


def _one_pass(data: bytes) -> pngcheck.PngStream | None:
    """A plain PNG's checksums and picture data, checked in one pass over the file (Pillow
    would read it twice: verify(), then the decode); None when its header is refused (a
    bomb's data is never inflated) and the usual checks say why."""
    try:
        _open(data)
    except InvalidImage:
        return None
    png = pngcheck.PngStream()
    png.feed(data)
    return png


def prepare_for_api(
    data: bytes, max_megapixels: float, *, max_accepted_megapixels: float | None = None
) -> str:
    """Decode, normalise and re-encode an input image; returns base64 for the API.

    Applies EXIF orientation, keeps the first frame of an animation, downscales to
    `max_megapixels` and drops all metadata. CPU-bound: call it in a thread.
    """
    return _encode_for_api(data, _checked_header(data, max_accepted_megapixels), max_megapixels)


def _encode_for_api(data: bytes, info: ImageInfo, max_megapixels: float) -> str:
    """A JPEG the API can take as it is goes minus its metadata; anything else is decoded
    once, as small as the format allows (the decode is also the proof that the data is
    whole), shrunk before any copy, then oriented, resized and encoded afresh."""
    limit = max_megapixels * 1_000_000
    cleaned = _jpeg_as_it_is(data, info, limit)
    if cleaned is not None:
        return base64.b64encode(cleaned).decode("ascii")
    try:
        img = _open(data)
        img.seek(0)
        draft_at_least(img, limit)  # a JPEG decodes straight at (about) the size needed
        img.load()
        turn = orientation(img)  # after load: a TIFF is turned upright as it loads
        sixteen = img.mode.startswith("I;16")
        if sixteen:
            # 16-bit greys (scanners, some TIFFs): scale to 8 bits rather than clip to white.
            img = img.convert("I")
        img = shrunk(img, limit)
        if sixteen:
            img = img.point(lambda v: v * (1 / 256)).convert("L")
        has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        mode = "RGBA" if has_alpha else "RGB"
        img = oriented(img if img.mode == mode else img.convert(mode), turn)
    except (InvalidImage, OSError, ValueError, SyntaxError, EOFError) as exc:
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


def _jpeg_as_it_is(data: bytes, info: ImageInfo, limit: float) -> bytes | None:
    """An upright RGB or grey JPEG within `limit` pixels, without its metadata, proven to
    decode; None when it must be encoded afresh (turned, too big, CMYK, unusual coding)."""
    if info.format != "jpeg" or info.width * info.height > limit:
        return None
    img = _open(data)
    if img.format != "JPEG" or img.mode not in ("RGB", "L") or orientation(img) != 1:
        return None
    try:
        cleaned = jpegclean.without_metadata(data)
    except jpegclean.NotPlain:
        return None
    _prove_decodes(cleaned, info)
    return cleaned


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
