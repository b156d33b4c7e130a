"""REST routes for application commands: validation, storage, CRUD."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fake_discord.common import (
    _CMD_NAME_RE,
    _ApiError,
    _form_error,
    _unknown,
)


class CommandsMixin:
    """Global and guild application commands, validated like Discord does."""

    # -- REST: application commands -------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if self._int(request, "app", "Application", 10002) != self.application_id:
            raise _unknown("Application", 10002)
        if "guild" not in request.match_info:
            return None
        gid = self._int(request, "guild", "Guild", 10004)
        if gid not in self.guilds:
            raise _ApiError(403, 50001, "Missing Access")
        return gid

    def _validate_command(self, cmd: Any, index: int | None) -> None:
        where: list[str | int] = [] if index is None else [index]
        if not isinstance(cmd, dict) or not isinstance(cmd.get("name"), str):
            raise _form_error([*where, "name"], "BASE_TYPE_REQUIRED", "This field is required")
        ctype = int(cmd.get("type", 1))
        name, desc = cmd["name"], cmd.get("description", "")
        if ctype == 1:
            if not _CMD_NAME_RE.match(name) or name != name.lower():
                raise _form_error(
                    [*where, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            if not 1 <= len(desc or "") <= 100:
                raise _form_error(
                    [*where, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
        else:
            if not 1 <= len(name) <= 32:
                raise _form_error(
                    [*where, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length."
                )
            if desc:
                raise _form_error(
                    [*where, "description"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                    "Context menu commands cannot have description",
                )
        self._validate_options(cmd.get("options") or [], [*where, "options"])

    def _validate_options(self, options: list[dict[str, Any]], where: list[str | int]) -> None:
        if len(options) > 25:
            raise _form_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        seen_optional = False
        names: set[str] = set()
        for i, opt in enumerate(options):
            name = opt.get("name", "")
            if not _CMD_NAME_RE.match(name) or name != name.lower():
                raise _form_error(
                    [*where, i, "name"],
                    "APPLICATION_COMMAND_INVALID_NAME",
                    "Command name is invalid",
                )
            if name in names:
                raise _form_error(
                    [*where, i, "name"],
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    "Option names must be unique",
                )
            names.add(name)
            if opt.get("type") in (1, 2):
                self._validate_options(opt.get("options") or [], [*where, i, "options"])
                continue
            if opt.get("required"):
                if seen_optional:
                    raise _form_error(
                        [*where, i, "required"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            if len(opt.get("choices") or []) > 25:
                raise _form_error(
                    [*where, i, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )

    def _store_command(
        self, scope: int | None, cmd: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        ctype = int(cmd.get("type", 1))
        stored = {
            "id": existing["id"] if existing else str(self.snowflake()),
            "application_id": str(self.application_id),
            "version": str(self.snowflake()),
            "type": ctype,
            "name": cmd["name"],
            "name_localizations": cmd.get("name_localizations"),
            "description": cmd.get("description", "") if ctype == 1 else "",
            "description_localizations": cmd.get("description_localizations"),
            "options": cmd.get("options") or [],
            "default_member_permissions": cmd.get("default_member_permissions"),
            "dm_permission": cmd.get("dm_permission", True),
            "nsfw": cmd.get("nsfw", False),
            "contexts": cmd.get("contexts"),
            "integration_types": cmd.get("integration_types", [0]),
        }
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    async def _h_commands_list(self, request: web.Request) -> web.Response:
        return self._ok(request, self.commands.get(self._command_scope(request), []))

    async def _h_commands_put(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = self._json(request)
        if not isinstance(body, list):
            raise _form_error([], "BASE_TYPE_ARRAY", "Must be an array.")
        if len(body) > 110:
            raise _ApiError(400, 30032, "Maximum number of application commands reached")
        old = {(c["name"], c["type"]): c for c in self.commands.get(scope, [])}
        seen: set[tuple[str, int]] = set()
        new = []
        for i, cmd in enumerate(body):
            self._validate_command(cmd, i)
            key = (cmd["name"], int(cmd.get("type", 1)))
            if key in seen:
                raise _form_error(
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add(key)
            new.append(self._store_command(scope, cmd, old.get(key)))
        self.commands[scope] = new
        return self._ok(request, new)

    async def _h_command_post(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        cmd = self._json(request)
        self._validate_command(cmd, None)
        current = self.commands.setdefault(scope, [])
        key = (cmd["name"], int(cmd.get("type", 1)))
        existing = next((c for c in current if (c["name"], c["type"]) == key), None)
        stored = self._store_command(scope, cmd, existing)
        if existing:
            current[current.index(existing)] = stored
        else:
            current.append(stored)
        return self._ok(request, stored, 200 if existing else 201)

    def _find_command(self, request: web.Request) -> tuple[int | None, dict[str, Any]]:
        scope = self._command_scope(request)
        cid = request.match_info["cmd"]
        for cmd in self.commands.get(scope, []):
            if cmd["id"] == cid:
                return scope, cmd
        raise _unknown("application command", 10063)

    async def _h_command_get(self, request: web.Request) -> web.Response:
        return self._ok(request, self._find_command(request)[1])

    async def _h_command_patch(self, request: web.Request) -> web.Response:
        scope, cmd = self._find_command(request)
        merged = {**cmd, **(self._json(request) or {})}
        self._validate_command(merged, None)
        stored = self._store_command(scope, merged, cmd)
        current = self.commands[scope]
        current[current.index(cmd)] = stored
        return self._ok(request, stored)

    async def _h_command_delete(self, request: web.Request) -> web.Response:
        scope, cmd = self._find_command(request)
        self.commands[scope].remove(cmd)
        return web.Response(status=204)
