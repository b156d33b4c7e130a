"""Attachment blobs and the signed, expiring CDN route."""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from tests.fake_discord.common import (
    CDN_URL_LIFETIME_S,
    _image_info,
    _sanitize_filename,
)


class CdnMixin:
    """Attachment blobs stored by the stand-in and served at /attachments/."""

    # -- attachments / CDN -------------------------------------------------

    def _sign(self, channel_id: int, att_id: int, filename: str) -> str:
        issued = int(self.now())
        expires = issued + CDN_URL_LIFETIME_S
        digest = hmac.new(
            self._secret, f"{att_id}:{expires:x}:{issued:x}".encode(), hashlib.sha256
        ).hexdigest()
        path = f"/attachments/{channel_id}/{att_id}/{quote(filename)}"
        return f"{self.cdn_base}{path}?ex={expires:x}&is={issued:x}&hm={digest}&"

    def _store_blob(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        channel_id: int,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        att_id = self.snowflake()
        name = _sanitize_filename(filename)
        guessed = content_type or mimetypes.guess_type(name)[0]
        if width is None or height is None:
            info = _image_info(data) if guessed is None or guessed.startswith("image/") else None
            if info is not None:
                width = width if width is not None else info[0]
                height = height if height is not None else info[1]
                guessed = guessed or info[2]
        self._blobs[att_id] = (data, guessed, name)
        url = self._sign(channel_id, att_id, name)
        att: dict[str, Any] = {
            "id": str(att_id),
            "filename": name,
            "size": len(data) if size is None else size,
            "url": url,
            "proxy_url": url,
            "content_type": guessed,
            "width": width,
            "height": height,
            "flags": 0,
        }
        if description is not None:
            att["description"] = description
        if ephemeral:
            att["ephemeral"] = True
        return att

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        width: int | None = None,
        height: int | None = None,
        channel_id: int = 0,
        size: int | None = None,
    ) -> dict[str, Any]:
        """Store bytes on the CDN; return the attachment object a user upload would have.

        width/height default to what Pillow reads (None for non-images). `size`
        overrides the reported size (to test limits without big buffers).
        """
        return self._store_blob(
            data,
            filename,
            content_type,
            channel_id=channel_id,
            width=width,
            height=height,
            size=size,
        )

    def attachment_bytes(self, attachment: dict[str, Any]) -> bytes:
        """The bytes behind an attachment object (uploaded by the bot or added by a test)."""
        return self._blobs[int(attachment["id"])][0]

    # -- CDN -----------------------------------------------------------------

    async def _h_cdn(self, request: web.Request) -> web.Response:
        gone = web.Response(status=404, text="This content is no longer available.")
        try:
            att_id = int(request.match_info["att"])
        except ValueError:
            return gone
        blob = self._blobs.get(att_id)
        if blob is None or unquote(request.match_info["filename"]) != blob[2]:
            return gone
        if self.cdn_require_signature:
            ex, issued, hm = (request.query.get(k, "") for k in ("ex", "is", "hm"))
            want = hmac.new(
                self._secret, f"{att_id}:{ex}:{issued}".encode(), hashlib.sha256
            ).hexdigest()
            try:
                expired = int(ex, 16) < self.now()
            except ValueError:
                return gone
            if not hmac.compare_digest(want, hm) or expired:
                return gone
        data, content_type, _ = blob
        return web.Response(body=data, content_type=content_type or "application/octet-stream")
