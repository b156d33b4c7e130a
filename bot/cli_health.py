"""`kontext-bot healthcheck`: the container's HEALTHCHECK. Exits 0 when the bot's
`GET /healthz` answers 200, 1 otherwise (printing why)."""

from __future__ import annotations

import sys

import httpx

from bot.config import HttpSettings

TIMEOUT_S = 5.0
EXIT_UNHEALTHY = 1
EXIT_OFF = 2
_ANY_ADDRESS = {"0.0.0.0", "::", ""}  # noqa: S104 - listening everywhere: ask over loopback


def run_healthcheck(settings: HttpSettings) -> int:
    if settings.http_port is None or settings.http_port == 0:
        print("HTTP_PORT is not set: the health endpoint is off", file=sys.stderr)
        return EXIT_OFF
    host = "127.0.0.1" if settings.http_host in _ANY_ADDRESS else settings.http_host
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{settings.http_port}/healthz"
    try:
        # trust_env off: a proxy in the environment must not answer for the bot.
        answer = httpx.get(url, timeout=TIMEOUT_S, trust_env=False)
    except httpx.HTTPError as exc:
        print(f"unhealthy: no answer from {url} ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UNHEALTHY
    if answer.status_code != 200:
        print(f"unhealthy: {answer.status_code} {answer.text.strip()[:200]}", file=sys.stderr)
        return EXIT_UNHEALTHY
    return 0
