"""The results table: one row per metric, with its target and whether it was met."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Result = dict[str, Any]

CONCURRENCY = 8
OVERHEAD_P50_TARGET_MS = 30.0
WALL_TOLERANCE = 0.10
FAIR_TOLERANCE = 0.10
LOOP_LAG_TARGET_MS = 50.0
# Discord's deadline is 3 s and the defer's own round trip comes on top of the bot's part.
ACK_P95_TARGET_MS = 1000.0
RSS_TARGET_MB = 150.0
RSS_GROWTH_TARGET_MB = 4.0  # 2 KB per queued job over 1,800 more jobs
OVERHEAD_RATIO_TARGET = 2.0
WORST_RSS_TARGET_MB = 400.0
LEDGER_TARGET_PER_S = 2000.0
NO_RESULT = "error (no result)"


@dataclass(frozen=True)
class Row:
    metric: str
    value: str
    target: str
    verdict: str  # PASS, FAIL or info


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def overhead_rows(result: Result | None, sizes: list[str]) -> list[Row]:
    rows = []
    for size in sizes:
        for mode in ("url", "base64"):
            metric = f"bot overhead/edit {size.upper().replace('MP', ' MP')} {mode} p50 / p95"
            targeted = size == "1mp"  # the target is for 1 MP; 12 MP is reported
            target = f"p50 < {OVERHEAD_P50_TARGET_MS:.0f} ms" if targeted else "(report only)"
            if result is None:
                rows.append(Row(metric, NO_RESULT, target, "FAIL"))
                continue
            case = result["cases"][f"{size}/{mode}"]
            ok = case["p50_ms"] < OVERHEAD_P50_TARGET_MS
            rows.append(
                Row(
                    metric,
                    f"{case['p50_ms']:.1f} / {case['p95_ms']:.1f} ms",
                    target,
                    verdict(ok) if targeted else "info",
                )
            )
    return rows


def queue_rows(result: Result | None, jobs: int, members: int, latency: float) -> list[Row]:
    ideal = math.ceil(jobs / CONCURRENCY) * latency
    wall_target = f"<= {ideal * (1 + WALL_TOLERANCE):.1f} s (ideal +{WALL_TOLERANCE:.0%})"
    lag_target = f"< {LOOP_LAG_TARGET_MS:.0f} ms"
    if result is None:
        return [
            Row(f"{jobs} edits wall time", NO_RESULT, wall_target, "FAIL"),
            Row("largest wait (enqueue -> start)", NO_RESULT, "<= fair share", "FAIL"),
            Row("event loop worst lag (10 ms sleeper)", NO_RESULT, lag_target, "FAIL"),
        ]
    wall, api = result["wall_s"], result["api_mean_s"]
    complete = result["succeeded"] == jobs and not result["errors"]
    api_ideal = math.ceil(jobs / CONCURRENCY) * api
    return [
        Row(
            f"{jobs} edits wall time ({members} members x {jobs // members})",
            f"{wall:.1f} s (ideal {ideal:.1f} s, {wall / ideal - 1:+.1%}; "
            f"at measured API time {api_ideal:.1f} s, {wall / api_ideal - 1:+.1%})",
            wall_target,
            verdict(wall <= ideal * (1 + WALL_TOLERANCE) and complete),
        ),
        Row(
            "edits succeeded / peak running / API time",
            f"{result['succeeded']}/{jobs} / {result['peak_running']} / {api:.3f} s mean",
            f"{jobs}/{jobs} / {CONCURRENCY} / (info)",
            verdict(complete and result["peak_running"] <= CONCURRENCY),
        ),
        Row(
            "largest wait (enqueue -> start)",
            f"{result['measured_max_wait_s']:.1f} s (job #{result['measured_max_wait_job']} "
            f"of a member; fair share {result['measured_max_wait_fair_s']:.1f} s)",
            "<= fair share",
            verdict(result["measured_max_wait_s"] <= result["measured_max_wait_fair_s"]),
        ),
        Row(
            "worst wait / fair share, any job",
            f"{result['measured_worst_wait_ratio']:.2f} ({result['measured_late_jobs']}/"
            f"{result['measured_started_jobs']} jobs over; {result['late_jobs']} over at "
            f"nominal {latency:g} s)",
            f"<= {1 + FAIR_TOLERANCE:.2f}",
            verdict(result["measured_worst_wait_ratio"] <= 1 + FAIR_TOLERANCE),
        ),
        Row(
            "event loop worst lag (10 ms sleeper)",
            f"{result['loop_lag_ms']:.1f} ms",
            lag_target,
            verdict(result["loop_lag_ms"] < LOOP_LAG_TARGET_MS),
        ),
        ack_row(f"{jobs} handed over at once", result),
        Row(
            "status hook calls (cog's progress messages)",
            str(result["status_calls"]),
            "(info)",
            "info",
        ),
    ]


def ack_row(label: str, result: Result | None) -> Row:
    """Handed over -> acknowledged (the bot's part of Discord's 3 s), over the run."""
    metric = f"acknowledgement p50 / p95 / max, {label}"
    target = f"p95 < {ACK_P95_TARGET_MS:.0f} ms"
    if result is None or "ack_p95_ms" not in result:
        return Row(metric, NO_RESULT, target, "FAIL")
    return Row(
        metric,
        f"{result['ack_p50_ms']:.0f} / {result['ack_p95_ms']:.0f} / {result['ack_max_ms']:.0f} ms "
        f"({result['acknowledged']} acknowledged)",
        target,
        verdict(result["ack_p95_ms"] < ACK_P95_TARGET_MS),
    )


def memory_rows(
    run2: Result | None, control: Result | None, long: Result | None, jobs: int, queued: int
) -> list[Row]:
    rss_target = f"< {RSS_TARGET_MB:.0f} MB"

    def peak(metric: str, result: Result | None, target: str = rss_target) -> Row:
        if result is None:
            return Row(metric, NO_RESULT, target, "FAIL")
        ok = result["peak_rss_mb"] < RSS_TARGET_MB
        return Row(
            metric, f"{result['peak_rss_mb']:.1f} MB", target, verdict(ok) if target else "info"
        )

    rows = [
        peak(f"peak RSS, the {jobs}-edit run", run2),
        peak(f"peak RSS, {jobs} queued at short latency (control)", control, ""),
        peak(f"peak RSS, {queued} queued at short latency", long),
    ]
    growth_target = f"< {RSS_GROWTH_TARGET_MB:.0f} MB"
    if long is None or control is None:
        rows.append(Row(f"RSS growth {jobs} -> {queued} queued", NO_RESULT, growth_target, "FAIL"))
    else:
        growth = long["peak_rss_mb"] - control["peak_rss_mb"]
        per_job_kb = growth * 1024 / (queued - jobs)
        versus_run2 = (
            f"; vs the {jobs}-edit run {long['peak_rss_mb'] - run2['peak_rss_mb']:+.1f} MB"
            if run2
            else ""
        )
        rows.append(
            Row(
                f"RSS growth {jobs} -> {queued} queued",
                f"{growth:+.1f} MB ({per_job_kb:.1f} KB per extra job{versus_run2})",
                growth_target,
                verdict(growth < RSS_GROWTH_TARGET_MB),
            )
        )
    if long is not None:
        rows.append(
            Row(
                f"event loop worst lag, {queued} queued",
                f"{long['loop_lag_ms']:.1f} ms",
                f"< {LOOP_LAG_TARGET_MS:.0f} ms",
                verdict(long["loop_lag_ms"] < LOOP_LAG_TARGET_MS),
            )
        )
        rows.append(ack_row(f"{queued} handed over at once", long))
    return rows


def ledger_rows(result: Result | None) -> list[Row]:
    target = f"> {LEDGER_TARGET_PER_S:.0f}/s"
    if result is None:
        return [Row("ledger reserve+commit pairs/s", NO_RESULT, target, "FAIL")]
    return [
        Row(
            "ledger reserve+commit pairs/s (SQLite file)",
            f"{result['pairs_per_s']:.0f}/s ({result['committed']} pairs in "
            f"{result['elapsed_s']:.2f} s; {result['attempts_per_s']:.0f} attempts/s)",
            target,
            verdict(result["pairs_per_s"] > LEDGER_TARGET_PER_S),
        ),
        Row(
            "ledger members charged past allowance",
            f"{result['overspent_members']} of {result['members']} ({result['refused']} "
            f"refused, {result['short_members']} refused early, "
            f"{result['left_reserved']} left held)",
            "0",
            verdict(
                result["overspent_members"] == 0
                and result["short_members"] == 0
                and result["left_reserved"] == 0
            ),
        ),
    ]


def end_to_end_rows(result: Result | None, case: str) -> list[Row]:
    """The bot against the minimal bot, Discord included, timed by the stand-ins."""
    target = f"p50 <= {OVERHEAD_RATIO_TARGET:.1f}x the minimal bot's"
    title = f"overhead/edit end to end, {case}: bot vs minimal bot"
    if result is None:
        return [Row(title, NO_RESULT, target, "FAIL")]
    bot, minimal = result["bot"], result["minimal"]
    ratio = bot["total_p50"] / minimal["total_p50"]

    def pair(key: str) -> str:
        return f"{bot[key + '_p50']:.1f} / {bot[key + '_p95']:.1f} ms (minimal bot " + (
            f"{minimal[key + '_p50']:.1f} / {minimal[key + '_p95']:.1f})"
        )

    return [
        Row("  before the API (event -> API request) p50 / p95", pair("pre"), "(info)", "info"),
        Row("  after the API (answer -> upload) p50 / p95", pair("post"), "(info)", "info"),
        Row(
            title,
            f"p50 {bot['total_p50']:.1f} vs {minimal['total_p50']:.1f} ms = {ratio:.2f}x "
            f"(p95 {bot['total_p95']:.1f} vs {minimal['total_p95']:.1f}; {bot['edits']} each)",
            target,
            verdict(ratio <= OVERHEAD_RATIO_TARGET),
        ),
    ]


def worst_case_rows(result: Result | None, edits: int, compares: int, mp: float) -> list[Row]:
    title = f"peak RSS, {edits} base64 edits on a {mp:.0f} MP RGBA PNG + {compares} Compares"
    target = f"< {WORST_RSS_TARGET_MB:.0f} MB"
    if result is None:
        return [Row(title, NO_RESULT, target, "FAIL")]
    done = result["edits_ok"] == edits and result["compares_ok"] == compares
    return [
        Row(
            title,
            f"{result['peak_rss_mb']:.1f} MB (image pool held at most "
            f"{result['pool_peak_mb']:.0f} MB)",
            target,
            verdict(result["peak_rss_mb"] < WORST_RSS_TARGET_MB and done),
        ),
        Row(
            "  edits done / Compare pictures made",
            f"{result['edits_ok']}/{edits} / {result['compares_ok']}/{compares}"
            + (f" ({result['errors'][0]})" if result["errors"] else ""),
            f"{edits}/{edits} / {compares}/{compares}",
            verdict(done),
        ),
    ]


def render(rows: list[Row]) -> str:
    """A plain-text table: metric | value | target | pass/fail."""
    header = Row("metric", "value", "target", "pass/fail")
    table = [header, *rows]
    widths = [max(len(r.metric) for r in table), max(len(r.value) for r in table)]
    widths.append(max(len(r.target) for r in table))

    def line(r: Row) -> str:
        cells = [r.metric.ljust(widths[0]), r.value.ljust(widths[1]), r.target.ljust(widths[2])]
        return " | ".join([*cells, r.verdict])

    rule = "-+-".join("-" * w for w in [*widths, len(header.verdict)])
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
