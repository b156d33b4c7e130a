"""Start-up settings, the command line (`python -m bot`, `kontext-bot edit`) and log redaction."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import ApiSettings, ConfigError, Settings, load
from bot.logs import MASK, RedactingFilter, setup_logging
from tests.fake_segmind import FakeSegmind
from tests.helpers import LocalServer, make_image, open_image, unused_port
from tests.world import API_KEY

TOKEN = "discord-token-must-stay-hidden-42"
SEGMIND_KEY = "segmind-key-must-stay-hidden-17"
CLI_TIMEOUT_S = 30


def clean_env(home: Path, **settings: str) -> dict[str, str]:
    """Only what Python needs, plus the given settings: nothing leaks in from the test run."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env.update(settings)
    return env


def run_bot(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=clean_env(cwd, **settings),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


async def run_bot_async(cwd: Path, *args: str, **settings: str) -> tuple[int, str, str]:
    """Like run_bot, without blocking the loop that serves the fake API."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=clean_env(cwd, **settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli_edit(
    cwd: Path,
    segmind: FakeSegmind,
    source: str,
    *options: str,
    prompt: str = "x",
    output: str = "out.png",
    api_key: str = API_KEY,
) -> tuple[int, str, str]:
    """`kontext-bot edit source prompt -o output options...` against the fake API."""
    return await run_bot_async(
        cwd, "edit", source, prompt, "-o", output, *options,
        SEGMIND_BASE_URL=segmind.base_url, SEGMIND_API_KEY=api_key,
    )  # fmt: skip


def assert_one_line_config_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: ")
    return lines[0]


# ---------------------------------------------------------------------- start-up errors


def test_no_settings_exits_2_with_one_line_naming_both_required(tmp_path: Path) -> None:
    line = assert_one_line_config_error(run_bot(tmp_path))
    assert "DISCORD_TOKEN is not set" in line
    assert "SEGMIND_API_KEY is not set" in line
    assert "developer portal" in line  # says how to fix it


def test_malformed_timeout_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_bot(
        tmp_path, DISCORD_TOKEN=TOKEN, SEGMIND_API_KEY=SEGMIND_KEY, SEGMIND_TIMEOUT_S="soon"
    )
    line = assert_one_line_config_error(result)
    assert "SEGMIND_TIMEOUT_S is invalid" in line
    assert "DISCORD_TOKEN" not in line
    assert "SEGMIND_API_KEY" not in line


def test_malformed_guild_ids_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_bot(
        tmp_path, DISCORD_TOKEN=TOKEN, SEGMIND_API_KEY=SEGMIND_KEY, DISCORD_GUILD_IDS="123,abc"
    )
    line = assert_one_line_config_error(result)
    assert "DISCORD_GUILD_IDS is invalid (must be comma-separated numeric ids)" in line
    assert "e.g. 123,456" in line


def test_secret_and_bad_values_never_appear_in_the_error(tmp_path: Path) -> None:
    bad_value = "private-bad-value-99"
    result = run_bot(
        tmp_path,
        DISCORD_TOKEN=TOKEN,
        SEGMIND_API_KEY=SEGMIND_KEY,
        SEGMIND_TIMEOUT_S=bad_value,
        SEGMIND_MAX_RETRIES="-1",
    )
    line = assert_one_line_config_error(result)
    assert "SEGMIND_TIMEOUT_S" in line
    assert "SEGMIND_MAX_RETRIES" in line
    for secret in (TOKEN, SEGMIND_KEY, bad_value):
        assert secret not in result.stdout
        assert secret not in result.stderr


def forge_sqlite_version(site: Path, version: str) -> str:
    """A PYTHONPATH on which Python's sqlite3 reports `version` (as an old build would)."""
    site.mkdir()
    info = tuple(int(part) for part in version.split("."))
    (site / "sitecustomize.py").write_text(
        f"import sqlite3\nsqlite3.sqlite_version = {version!r}\n"
        f"sqlite3.sqlite_version_info = {info!r}\n"
    )
    return str(site)


def test_an_sqlite_too_old_for_the_database_stops_start_up_with_one_line(tmp_path: Path) -> None:
    database = tmp_path / "data" / "kontext.db"
    result = run_bot(
        tmp_path,
        DISCORD_TOKEN=TOKEN,
        SEGMIND_API_KEY=SEGMIND_KEY,
        DATABASE_PATH=str(database),
        DISCORD_API_URL=f"http://127.0.0.1:{unused_port()}/api/v10",  # never the real one
        PYTHONPATH=forge_sqlite_version(tmp_path / "site", "3.30.1"),
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "SQLite is 3.30.1" in line and "3.31 or newer" in line
    assert not database.exists()  # nothing half-made


def test_dot_env_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"DISCORD_TOKEN={TOKEN}\nSEGMIND_API_KEY={SEGMIND_KEY}\nSEGMIND_MAX_RETRIES=99\n",
        encoding="utf-8",
    )
    line = assert_one_line_config_error(run_bot(tmp_path))
    # The two secrets came from .env; only the bad value there is reported.
    assert "SEGMIND_MAX_RETRIES is invalid" in line
    assert "is not set" not in line
    assert TOKEN not in line


def test_settings_read_dot_env_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        f"DISCORD_TOKEN={TOKEN}\nSEGMIND_API_KEY={SEGMIND_KEY}\nSEGMIND_MODEL=flux-kontext-pro\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    settings = load(Settings)
    assert settings.discord_token.get_secret_value() == TOKEN
    assert settings.segmind_model == "flux-kontext-pro"
    assert TOKEN not in repr(settings)
    assert SEGMIND_KEY not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "expected"), [("1, 2", (1, 2)), ("123", (123,)), (" 7 ,8, ", (7, 8)), ("", ())]
)
def test_guild_ids_are_parsed_from_comma_separated_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[int, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("SEGMIND_API_KEY", SEGMIND_KEY)
    monkeypatch.setenv("DISCORD_GUILD_IDS", raw)
    assert Settings().discord_guild_ids == expected


def test_load_raises_config_error_without_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGMIND_API_KEY", SEGMIND_KEY)
    monkeypatch.setenv("SEGMIND_BASE_URL", "ftp://example.com")
    with pytest.raises(ConfigError) as info:
        load(ApiSettings)
    text = str(info.value)
    assert "SEGMIND_BASE_URL is invalid (must start with http:// or https://)" in text
    assert "ftp://example.com" not in text
    assert SEGMIND_KEY not in text


def test_settings_list_both_secrets_for_redaction() -> None:
    settings = Settings(_env_file=None, discord_token=TOKEN, segmind_api_key=SEGMIND_KEY)  # type: ignore[call-arg]
    assert set(settings.secrets) == {TOKEN, SEGMIND_KEY}


# ---------------------------------------------------------------------- kontext-bot edit


async def test_edit_writes_the_result_and_prints_what_it_cost(
    tmp_path: Path, segmind: FakeSegmind
) -> None:
    segmind.send_cost_header = True
    (tmp_path / "in.png").write_bytes(make_image(256, 192, "PNG"))
    code, out, err = await cli_edit(
        tmp_path,
        segmind,
        "in.png",
        "--seed",
        "1234",
        "--steps",
        "20",
        prompt="make it night",
        output="results/out.png",
    )
    assert code == 0, err
    assert err == ""
    result = open_image((tmp_path / "results" / "out.png").read_bytes())
    assert result.format == "PNG"
    assert result.size == (256, 192)
    # The fake inverts colours: the red half came back cyan.
    r, g, b = result.convert("RGB").getpixel((200, 150))
    assert r < 80 and g > 190 and b > 190

    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["seed"] == "1234"
    assert lines["time"].endswith(" s")
    float(lines["time"].removesuffix(" s"))
    assert lines["cost"] == "0.04"
    assert lines["remaining credits"] == "99.96"
    assert "(png, 256x192)" in out

    (req,) = segmind.requests
    assert req.json["seed"] == 1234
    assert req.json["num_inference_steps"] == 20
    # A local file is cleaned (re-encoded, opaque so JPEG) and sent as base64, not as a path.
    sent = open_image(base64.b64decode(req.json["input_image"], validate=True))
    assert (sent.format, sent.size) == ("JPEG", (256, 192))


async def test_edit_says_when_the_cost_is_unknown(tmp_path: Path, segmind: FakeSegmind) -> None:
    (tmp_path / "in.jpg").write_bytes(make_image(128, 128, "JPEG"))
    code, out, err = await cli_edit(tmp_path, segmind, "in.jpg")
    assert code == 0, err
    assert "cost: unknown (no x-cost header)" in out
    assert "remaining credits: 99.96" in out


async def test_edit_passes_a_url_input_through_in_url_mode(
    tmp_path: Path, segmind: FakeSegmind, local_server: LocalServer
) -> None:
    url = local_server.serve_bytes("/photo.png", make_image(128, 128))
    code, _out, err = await cli_edit(tmp_path, segmind, url)
    assert code == 0, err
    assert segmind.requests[0].json["input_image"] == url
    # Fetched twice: once by the CLI to check it, once by the API.
    assert local_server.hits == ["/photo.png", "/photo.png"]
    assert open_image((tmp_path / "out.png").read_bytes()).size == (128, 128)


@pytest.mark.parametrize("where", ["file", "url"])
async def test_edit_converts_a_heic_the_api_cannot_take(
    tmp_path: Path, segmind: FakeSegmind, local_server: LocalServer, where: str
) -> None:
    heic = make_image(256, 192, "HEIF")
    if where == "file":
        (tmp_path / "IMG_0001.HEIC").write_bytes(heic)
        source = "IMG_0001.HEIC"
    else:
        source = local_server.serve_bytes("/IMG_0001.HEIC", heic, content_type="image/heic")
    code, _out, err = await cli_edit(tmp_path, segmind, source)
    assert code == 0, err
    # Even in url mode the API gets JPEG bytes, never a HEIC it cannot read.
    sent = open_image(base64.b64decode(segmind.requests[0].json["input_image"], validate=True))
    assert (sent.format, sent.size) == ("JPEG", (256, 192))
    assert open_image((tmp_path / "out.png").read_bytes()).size == (256, 192)


async def test_edit_with_a_bad_key_exits_1_without_showing_it(
    tmp_path: Path, segmind: FakeSegmind
) -> None:
    wrong = "sk-wrong-key-must-not-be-shown"
    (tmp_path / "in.png").write_bytes(make_image(128, 128))
    code, out, err = await cli_edit(tmp_path, segmind, "in.png", api_key=wrong)
    assert code == 1
    assert err.strip() == "error: the API key was rejected (status 401)"
    assert "Traceback" not in err
    assert wrong not in out + err
    assert not (tmp_path / "out.png").exists()
    assert len(segmind.requests) == 1


async def test_edit_of_a_non_image_exits_2_before_any_api_call(
    tmp_path: Path, segmind: FakeSegmind
) -> None:
    (tmp_path / "notes.png").write_text("not really a picture", encoding="utf-8")
    code, _out, err = await cli_edit(tmp_path, segmind, "notes.png")
    assert code == 2
    assert "error: notes.png is not a usable image" in err
    assert "Traceback" not in err
    assert segmind.requests == []


async def test_edit_of_a_missing_file_or_bad_option_exits_2(
    tmp_path: Path, segmind: FakeSegmind
) -> None:
    code, _out, err = await cli_edit(tmp_path, segmind, "nope.png")
    assert code == 2
    assert "error: No such file: nope.png" in err
    (tmp_path / "in.png").write_bytes(make_image(128, 128))
    code, _out, err = await cli_edit(tmp_path, segmind, "in.png", "--steps", "99")
    assert code == 2
    assert "`steps` must be between 4 and 50" in err
    assert segmind.requests == []


def test_edit_needs_only_the_api_settings(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "edit", "in.png", "x", "-o", "out.png")
    line = assert_one_line_config_error(result)
    assert "SEGMIND_API_KEY is not set" in line
    assert "DISCORD_TOKEN" not in line


# ---------------------------------------------------------------------- redaction


@pytest.fixture
def redacted_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter([TOKEN, SEGMIND_KEY, ""]))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_redacting_filter_masks_secrets_in_the_message(
    redacted_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = redacted_log
    logger.info("token=%s key=%s", TOKEN, SEGMIND_KEY)
    logger.warning(f"inline {SEGMIND_KEY}")  # an f-string: the case the filter exists for
    text = stream.getvalue()
    assert TOKEN not in text
    assert SEGMIND_KEY not in text
    assert f"token={MASK} key={MASK}" in text
    assert f"inline {MASK}" in text


def test_redacting_filter_masks_secrets_in_exception_text(
    redacted_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = redacted_log
    try:
        raise RuntimeError(f"request with x-api-key {SEGMIND_KEY} failed")
    except RuntimeError:
        logger.exception("edit failed")
    text = stream.getvalue()
    assert SEGMIND_KEY not in text
    assert f"RuntimeError: request with x-api-key {MASK} failed" in text
    assert "Traceback" in text  # the traceback is kept, only the secret is masked


def test_redacting_filter_leaves_clean_messages_alone(
    redacted_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = redacted_log
    logger.info("nothing to hide in %d", 42)
    # An empty secret in the list must not mask every gap between characters.
    assert stream.getvalue() == "INFO nothing to hide in 42\n"


def test_setup_logging_masks_secrets_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        setup_logging("INFO", [TOKEN, SEGMIND_KEY])
        logging.getLogger("bot.anything").error("leaked %s / %s", TOKEN, SEGMIND_KEY)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    err = capsys.readouterr().err
    assert "bot.anything" in err
    assert TOKEN not in err
    assert SEGMIND_KEY not in err
    assert f"leaked {MASK} / {MASK}" in err


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    import re

    from bot.config import Settings

    text = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z_]+)=", text, re.MULTILINE))
    assert listed == {name.upper() for name in Settings.model_fields}
