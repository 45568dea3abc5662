"""Checks a REST harness run (its summary.json) against BSN's targets and prints the verdict as markdown.

Targets, per call: BSN keeps >= 90% of the bare Flask floor's (`flask`) requests/s, a p99 <= 1.5x the floor's,
and >= 3x DRF's requests/s; and the harness's answer checks pass. With --repeat, each figure is the median over
the runs (a single run's noise here reaches 2x, see the harness's README). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import statistics
import sys

ORDER = ["feed", "posts", "user", "create"]
TARGET, FLOOR, PEER = "bsn", "flask", "drf"
MIN_FLOOR_RPS, MAX_FLOOR_P99, MIN_PEER_RPS = 0.90, 1.5, 3.0


def medians(summary: dict) -> tuple[dict, dict]:
    """{(server, endpoint): (req/s, p99 ms)} as medians over runs, and {server: [check, ...]}."""
    rows: dict = {}
    checks: dict = {}
    for result in summary["results"]:
        checks.setdefault(result["server"], []).append(result.get("check") or result.get("error") or "-")
        for row in result["endpoints"]:
            rows.setdefault((result["server"], row["endpoint"]), []).append((row["rps"], row["p99Ms"]))
    return {
        key: (statistics.median(r for r, _ in runs), statistics.median(p for _, p in runs))
        for key, runs in rows.items()
    }, checks


def verdict(summary: dict) -> tuple[str, bool]:
    figures, checks = medians(summary)
    lines = [
        f"Targets ({summary['db']}, {len(summary['results'])} server runs): req/s >= {MIN_FLOOR_RPS:.0%} of "
        f"`{FLOOR}`, p99 <= {MAX_FLOOR_P99}x `{FLOOR}`'s, req/s >= {MIN_PEER_RPS:g}x `{PEER}`'s.",
        "",
        f"| endpoint | {TARGET} req/s | vs {FLOOR} | {TARGET} p99 ms | vs {FLOOR} p99 | vs {PEER} req/s | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    all_met = True
    for endpoint in ORDER:
        mine, floor, peer = (figures.get((s, endpoint)) for s in (TARGET, FLOOR, PEER))
        if mine is None or floor is None:
            lines.append(f"| {endpoint} | - | - | - | - | - | not measured |")
            all_met = False
            continue
        rps_ratio, p99_ratio = mine[0] / floor[0], mine[1] / floor[1]
        peer_ratio = mine[0] / peer[0] if peer else None
        missed = [
            name
            for name, ok in (
                (f"req/s < {MIN_FLOOR_RPS:.0%} of {FLOOR}", rps_ratio >= MIN_FLOOR_RPS),
                (f"p99 > {MAX_FLOOR_P99}x {FLOOR}", p99_ratio <= MAX_FLOOR_P99),
                (f"req/s < {MIN_PEER_RPS:g}x {PEER}", peer_ratio is None or peer_ratio >= MIN_PEER_RPS),
            )
            if not ok
        ]
        # Without the peer in the run, its target cannot be judged: never "met".
        all_met &= not missed and peer_ratio is not None
        verdict_text = "MISSED: " + "; ".join(missed) if missed else ("met" if peer else f"met ({PEER} not run)")
        lines.append(
            f"| {endpoint} | {mine[0]:.0f} | {rps_ratio:.0%} | {mine[1]:.1f} | {p99_ratio:.2f}x | "
            f"{f'{peer_ratio:.2f}x' if peer else '-'} | {verdict_text} |"
        )
    bad_checks = {s: c for s, c in checks.items() if any(x != "ok" for x in c)}
    lines += ["", "Answer checks: " + ", ".join(f"{s} {'/'.join(c)}" for s, c in checks.items()) + "."]
    all_met &= TARGET in checks and TARGET not in bad_checks
    lines.append(f"Verdict: {'all targets met' if all_met else 'targets MISSED'}.")
    return "\n".join(lines), all_met


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: verdict.py RESULTS_DIR/summary.json", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        text, met = verdict(json.load(f))
    print(text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
