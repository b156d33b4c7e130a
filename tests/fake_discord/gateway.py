"""The gateway websocket: HELLO, IDENTIFY, RESUME, dispatches, reconnects."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import time
import zlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fake_discord.common import (
    FLAG_EPHEMERAL,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    _iso,
)


@dataclass
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0


@dataclass(eq=False)  # identity semantics: kept in a set
class _Conn:
    ws: web.WebSocketResponse
    number: int
    query: dict[str, str]
    session: _Session | None = None
    ready: bool = False
    compressor: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class GatewayMixin:
    """The gateway websocket and the dispatches the stand-in sends over it."""

    # -- echoing the bot's own messages ------------------------------------------

    def _echo(self, event: str, msg: dict[str, Any]) -> None:
        """Send the bot its own message events, as Discord does (not for ephemeral ones)."""
        if not self.echo_bot_messages or msg["flags"] & FLAG_EPHEMERAL or not self._conn_ready():
            return
        if event == "MESSAGE_DELETE":
            data = {"id": msg["id"], "channel_id": msg["channel_id"]}
            if "guild_id" in msg:
                data["guild_id"] = msg["guild_id"]
        else:
            data = self._gateway_message(msg)
        self._spawn(self.dispatch(event, data))

    def _gateway_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        data = self._public(msg)
        if "guild_id" in msg:
            member = self._guild_member(int(msg["guild_id"]), int(msg["author"]["id"]))
            if member is not None:
                data["member"] = {k: v for k, v in member.items() if k != "user"}
        return data

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- gateway -------------------------------------------------------------

    async def _h_gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        await self._gateway_open.wait()  # hold_gateway(): no HELLO until released
        conn = _Conn(ws=ws, number=len(self.gateway_connections) + 1, query=dict(request.query))
        if self.compress_gateway and request.query.get("compress") == "zlib-stream":
            conn.compressor = zlib.compressobj()
        self._conns.add(conn)
        self.gateway_connections.append(
            {"number": conn.number, "query": conn.query, "at": time.monotonic()}
        )
        try:
            await self._send(
                conn,
                {
                    "op": 10,
                    "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                    "s": None,
                    "t": None,
                },
            )
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                raw = msg.data if msg.type == WSMsgType.TEXT else msg.data.decode()
                try:
                    frame = json.loads(raw)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                self.received_gateway.append(frame)
                await self._on_frame(conn, frame)
        finally:
            self._conns.discard(conn)
            if self._conn is conn:
                self._conn = None
        return ws

    async def _send(self, conn: _Conn, frame: dict[str, Any]) -> None:
        self.sent_gateway.append(frame)
        text = json.dumps(frame)
        async with conn.lock:
            if conn.compressor is not None:
                data = conn.compressor.compress(text.encode()) + conn.compressor.flush(
                    zlib.Z_SYNC_FLUSH
                )
                await conn.ws.send_bytes(data)
            else:
                await conn.ws.send_str(text)

    async def _on_frame(self, conn: _Conn, frame: dict[str, Any]) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, d or {})
        elif op == 6:
            await self._resume(conn, d or {})
        elif op == 8 and conn.session is not None:
            await self._member_chunk(conn, d or {})
        # op 3 (presence) and 4 (voice state) are recorded in received_gateway only.

    async def _identify(self, conn: _Conn, d: dict[str, Any]) -> None:
        self.identifies.append(d)
        if self.token is not None and d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if "intents" not in d:
            await conn.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        intents = int(d["intents"])
        if intents & PRIVILEGED_INTENTS & ~self.allowed_privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = _Session(id=secrets.token_hex(16), intents=intents, shard=d.get("shard"))
        self._sessions[session.id] = session
        conn.session = session
        ready: dict[str, Any] = {
            "v": 10,
            "user": self._me(),
            "guilds": [{"id": str(g), "unavailable": True} for g in self._shard_guilds(session)],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._dispatch_on(conn, "READY", ready)
        for gid in self._shard_guilds(session):
            await self._dispatch_on(conn, "GUILD_CREATE", self._guild_create(gid, intents))
        conn.ready = True
        self._conn = conn

    def _shard_guilds(self, session: _Session) -> list[int]:
        if not session.shard:
            return list(self.guilds)
        shard_id, count = session.shard
        return [g for g in self.guilds if (g >> 22) % count == shard_id]

    def _guild_create(self, guild_id: int, intents: int) -> dict[str, Any]:
        guild = copy.deepcopy(self.guilds[guild_id])
        # Without GUILD_MEMBERS Discord only sends the bot's own member.
        if not intents & INTENT_GUILD_MEMBERS:
            guild["members"] = [
                m for m in guild["members"] if m["user"]["id"] == str(self.bot_user_id)
            ]
        bot_member = self._guild_member(guild_id, self.bot_user_id)
        guild.update(
            member_count=len(self.guilds[guild_id]["members"]),
            large=False,
            unavailable=False,
            lazy=True,
            joined_at=bot_member["joined_at"] if bot_member else _iso(self.now()),
            threads=[],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return guild

    async def _resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if session is None or (self.token is not None and d.get("token") != self.token):
            await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        conn.session = session
        conn.ready = True
        self._conn = conn
        await self._dispatch_on(conn, "RESUMED", {})

    async def _member_chunk(self, conn: _Conn, d: dict[str, Any]) -> None:
        gid = int(d.get("guild_id", 0))
        if gid not in self.guilds:
            return
        members = self.guilds[gid]["members"]
        if d.get("user_ids"):
            wanted = {str(u) for u in d["user_ids"]}
            members = [m for m in members if m["user"]["id"] in wanted]
        elif d.get("query"):
            members = [m for m in members if m["user"]["username"].startswith(d["query"])]
        chunk = {"guild_id": str(gid), "members": members, "chunk_index": 0, "chunk_count": 1}
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self._dispatch_on(conn, "GUILD_MEMBERS_CHUNK", chunk)

    async def _dispatch_on(self, conn: _Conn, event: str, data: dict[str, Any]) -> None:
        assert conn.session is not None
        conn.session.seq += 1
        await self._send(conn, {"op": 0, "t": event, "s": conn.session.seq, "d": data})

    def _conn_ready(self) -> bool:
        return self._conn is not None and self._conn.ready and not self._conn.ws.closed

    async def wait_for_ready_bot(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until a bot has identified (or resumed) and got READY + GUILD_CREATEs."""
        await self.wait_for(self._conn_ready, timeout, message="a bot to connect and identify")

    @property
    def intents(self) -> int | None:
        """The intents of the last IDENTIFY, if any."""
        return int(self.identifies[-1]["intents"]) if self.identifies else None

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH (op 0) to the connected bot, as Discord would.

        MESSAGE_* events are dropped (recorded in dropped_gateway) when the bot lacks
        the GUILD_MESSAGES / DIRECT_MESSAGES intent, and their content is emptied
        without MESSAGE_CONTENT unless the bot is mentioned, in a DM, or the author.
        """
        if not self._conn_ready():
            raise AssertionError(f"no bot connected to the gateway to receive {event}")
        conn = self._conn
        assert conn is not None and conn.session is not None
        data = copy.deepcopy(data)
        if event.startswith("MESSAGE_") and "author" in data:
            intents = conn.session.intents
            in_guild = data.get("guild_id") is not None
            needed = INTENT_GUILD_MESSAGES if in_guild else INTENT_DIRECT_MESSAGES
            if not intents & needed:
                self.dropped_gateway.append({"t": event, "d": data, "reason": "intents"})
                return
            mentioned = any(u.get("id") == str(self.bot_user_id) for u in data.get("mentions", []))
            own = data["author"].get("id") == str(self.bot_user_id)
            if in_guild and not (intents & INTENT_MESSAGE_CONTENT or mentioned or own):
                data.update(content="", embeds=[], attachments=[], components=[])
                data.pop("poll", None)
        if event == "INTERACTION_CREATE":
            self._register_interaction(data, dispatched=True)
        await self._dispatch_on(conn, event, data)

    async def send_interaction(self, payload: dict[str, Any]) -> None:
        """Dispatch INTERACTION_CREATE; the 3 s / 15 min clocks start now."""
        await self.dispatch("INTERACTION_CREATE", payload)

    async def close_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway socket (4000: it reconnects and RESUMEs)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.ws.close(code=code)

    def hold_gateway(self) -> None:
        """New gateway connections wait without a HELLO until release_gateway(): after a
        close_gateway() the bot then stays disconnected for as long as a test needs."""
        self._gateway_open.clear()

    def release_gateway(self) -> None:
        """Let held and new gateway connections go on (HELLO, then IDENTIFY or RESUME)."""
        self._gateway_open.set()

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the bot reconnects and RESUMEs."""
        if self._conn is not None:
            conn = self._conn
            await self._send(conn, {"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9: the bot identifies again from scratch (unless resumable)."""
        if self._conn is not None:
            conn = self._conn
            if not resumable and conn.session is not None:
                self._sessions.pop(conn.session.id, None)
            await self._send(conn, {"op": 9, "d": resumable, "s": None, "t": None})
