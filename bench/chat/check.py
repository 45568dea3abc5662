"""Verdicts of the chat benchmark: reads a harness result directory (summary.json, bsn.log) and checks BSN's targets.

    python bench/chat/check.py RESULT_DIR      # default or heavy run of the shared harness
    python bench/chat/check.py --idle IDLE_JSON

Prints Markdown lines "- PASS/FAIL: ..." and exits 1 when a target is missed. Targets (README.md):
default scenario: no loss, p99 below 3x node-socketio's and below django-channels' in the same run;
heavy scenario: no loss; both: every sent message stored; idle: web process under 256 MiB with 1,000 sockets.
Every BSN entry of the run (`bsn`, `bsn-2w`) is checked on its own; the exit code is 1 when none meets all the
scenario's targets.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

STORED = re.compile(r"\[bsn-bench\] stored messages: (\d+)")


def line(ok: bool, text: str) -> bool:
    print(f"- {'PASS' if ok else 'FAIL'}: {text}")
    return ok


def stored_messages(result_dir: Path, server: str) -> int | None:
    log = result_dir / f"{server}.log"
    found = STORED.findall(log.read_text(errors="replace")) if log.exists() else []
    return int(found[-1]) if found else None


def bsn_servers(names) -> list[str]:
    """BSN's entries of a run: `bsn` and its variants (`bsn-2w`)."""
    return [name for name in names if name == "bsn" or name.startswith("bsn-")]


def check_run(result_dir: Path) -> bool:
    summary = json.loads((result_dir / "summary.json").read_text())
    scenario = summary["scenarioName"]
    rows = {r["server"]: r for r in summary["results"]}
    servers = bsn_servers(rows) or ["bsn"]
    # Each entry is a way to deploy BSN (one worker, two): the scenario's targets are met when one of them
    # meets all of them. Two workers carry more but answer slower at a light load, so one rarely does both.
    met = [server for server in servers if check_server(result_dir, scenario, rows, server)]
    print(f"- {scenario} targets met by: {', '.join(met) if met else 'no BSN entry'}")
    return bool(met)


def check_server(result_dir: Path, scenario: str, rows: dict, server: str) -> bool:
    bsn = rows.get(server)
    print(f"Targets of {server} ({scenario} scenario, {result_dir.name}):")
    if bsn is None or not bsn.get("delivery"):
        return line(False, f"{server} produced no result ({bsn.get('error') if bsn else 'not in this run'})")
    delivery, latency = bsn["delivery"], bsn["latencyMs"]
    ok = line(
        delivery["lost"] == 0 and delivery["duplicates"] == 0 and delivery["misrouted"] == 0,
        f"no loss: {delivery['unique']}/{delivery['expected']} delivered, {delivery['lost']} lost, "
        f"{delivery['duplicates']} duplicates, {delivery['misrouted']} misrouted",
    )
    sent, stored = bsn["send"]["sent"], stored_messages(result_dir, server)
    ok &= line(stored == sent, f"storage on: {stored} messages stored for {sent} sent")
    if scenario == "default":
        p99 = latency["p99"]
        for name, factor in (("node-socketio", 3), ("django-channels", 1)):
            ref = rows.get(name)
            if ref is None or not ref.get("latencyMs") or ref["latencyMs"]["p99"] is None:
                ok &= line(False, f"p99 against {name}: {name} has no result in this run")
                continue
            bound = factor * ref["latencyMs"]["p99"]
            what = f"{factor}x {name}'s" if factor != 1 else f"{name}'s"
            # A p99 over the few messages that got through says nothing: with loss the target is missed.
            partial = f" (of the {delivery['unique']} delivered only)" if delivery["lost"] else ""
            ok &= line(
                p99 is not None and p99 < bound and not delivery["lost"],
                f"p99 {p99 if p99 is not None else float('nan'):.1f} ms{partial} below {what} ({bound:.1f} ms)",
            )
    if bsn.get("disconnects") and bsn["disconnects"]["count"]:
        print(f"- note: {bsn['disconnects']['count']} disconnects during the run {bsn['disconnects']['reasons']}")
    return ok


def check_idle(path: Path) -> bool:
    r = json.loads(path.read_text())
    print(f"Targets (idle, {r['clients']} authenticated /chat sockets held {r['holdS']} s):")
    ok = line(
        r["connected"] == r["clients"] and r["stillConnectedAfterHold"] == r["clients"],
        f"{r['connected']}/{r['clients']} connected, {r['stillConnectedAfterHold']} still connected at the end",
    )
    return ok & line(
        r["rssPeakMiB"] < r["limitMiB"],
        f"web process RSS {r['rssPeakMiB']} MiB (gunicorn master + worker; {r['rssBeforeMiB']} MiB before any "
        f"client, {r['perConnectionKiB']} KiB per connection) below {r['limitMiB']} MiB",
    )


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--idle":
        return 0 if check_idle(Path(argv[1])) else 1
    if len(argv) == 1:
        return 0 if check_run(Path(argv[0])) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
