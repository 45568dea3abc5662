"""The reward-algorithm optimizer (workers.optimizer): pinned report, hand-checked numbers, edge cases, the CLI."""

import json
import math
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from workers.optimizer import algorithms, report
from workers.optimizer.inputs import Market, Session, parse_market, parse_sessions
from workers.optimizer.units import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "optimizer")
SESSIONS = os.path.join(FIXTURES, "sessions.json")
MARKET = os.path.join(FIXTURES, "market.json")
EXPECTED = os.path.join(FIXTURES, "expected_report.json")
TIMEOUT = timedelta(seconds=300)


def run(*args, python_flags=()):
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "workers.optimizer", *args],
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=60,
    )


def report_of(*args):
    done = run(*args)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    return json.loads(done.stdout)


def load(path):
    with open(path) as handle:
        return json.load(handle)


def at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def floor8(value: Fraction) -> Fraction:
    """Round down to 10^-8, independently of the module's Decimal code."""
    return Fraction(math.floor(value * 10**8), 10**8)


def as_fraction(text: str) -> Fraction:
    return Fraction(text)


def session(**overrides) -> Session:
    fields = {
        "user_id": 1,
        "started_at": at("2024-05-01T00:00:00Z"),
        "ended_at": None,
        "last_heartbeat": at("2024-05-01T00:00:00Z"),
        "power": Decimal("1"),
        "accrued": Decimal("0"),
        "end_reason": None,
        "streak_days": 0,
        "security_circle": 0,
        "idle_days": 0,
    }
    fields.update(overrides)
    return Session(**fields)


# ---- the pinned report ----


def test_the_fixture_gives_the_pinned_report_byte_for_byte():
    done = run("--sessions", SESSIONS, "--market", MARKET)
    assert done.returncode == 0 and done.stderr == b""
    with open(EXPECTED, "rb") as handle:
        assert done.stdout == handle.read()


def test_the_report_has_its_keys_in_a_fixed_order():
    got = report_of("--sessions", SESSIONS, "--market", MARKET)
    assert list(got) == [
        "version",
        "mode",
        "generated_at",
        "window",
        "sessions",
        "users",
        "daily_budget",
        "objective",
        "algorithms",
        "best_algorithm",
        "total_profit",
        "offline_mining",
        "notes",
    ]
    assert list(got["algorithms"]) == ["bsn", "pi", "ice", "hamster"]
    for metrics in got["algorithms"].values():
        assert list(metrics) == [
            "rule",
            "tokens_emitted",
            "value",
            "top1_share",
            "uncovered_tokens",
            "active_miner_tokens",
            "daily_emission",
            "within_budget",
        ]
    assert got["version"] == 1 and got["mode"] == "full"
    assert got["generated_at"] == "2024-05-03T11:00:00Z"  # the latest timestamp in the input
    assert got["sessions"] == 8 and got["users"] == 4 and got["daily_budget"] == "1000"
    assert "active_miner_tokens" in got["objective"]


def test_bsn_numbers_match_a_hand_computation():
    """Recompute BSN's rule from the fixture with Fractions: power x hours to the earliest end, floored per session."""
    raw = load(SESSIONS)["sessions"]
    quotes = sorted((at(q["t"]), as_fraction(q["price"])) for q in load(MARKET)["prices"])
    now = at("2024-05-03T11:00:00Z")
    total = value = Fraction(0)
    per_user = {}
    for s in raw:
        start = at(s["started_at"])
        ends = [at(s["last_heartbeat"]) + TIMEOUT, start + timedelta(hours=24), now]
        if s["ended_at"]:
            ends.append(at(s["ended_at"]))
        end = min(ends)
        hours = Fraction(int((end - start).total_seconds()), 3600)
        tokens = floor8(as_fraction(s["power"]) * hours)
        total += tokens
        per_user[s["user_id"]] = per_user.get(s["user_id"], 0) + tokens
        value += tokens * [p for t, p in quotes if t <= end][-1]

    # Spelled out for the reader: 2 h x 0.606, 7 min x 0.6 (heartbeats stopped), 24 h x 1.2, 155 min x 0.6,
    # 70 min x 0.25 (floored), 3 h x 0.606, 1.5 h x 1.2, and the open session's 2 h x 0.25 up to "now".
    by_hand = [
        Fraction("1.212"),
        Fraction("0.07"),
        Fraction("28.8"),
        Fraction("1.55"),
        Fraction("0.29166666"),
        Fraction("1.818"),
        Fraction("1.8"),
        Fraction("0.5"),
    ]
    assert total == sum(by_hand) == Fraction("36.04166666")

    got = report_of("--sessions", SESSIONS, "--market", MARKET)
    bsn = got["algorithms"]["bsn"]
    assert as_fraction(bsn["tokens_emitted"]) == total
    assert as_fraction(bsn["active_miner_tokens"]) == total and bsn["uncovered_tokens"] == "0"
    assert as_fraction(bsn["value"]) == round(value, 8)  # 0.44916983325 before rounding
    assert got["total_profit"] == bsn["value"] == "0.44916983"
    days = Fraction(51, 24)  # 2024-05-01T08:00 to 2024-05-03T11:00
    assert got["window"] == {"from": "2024-05-01T08:00:00Z", "to": "2024-05-03T11:00:00Z", "days": "2.125"}
    assert as_fraction(bsn["daily_emission"]) == round(total / days, 8)
    assert as_fraction(bsn["top1_share"]) == round(max(per_user.values()) / total, 4)
    assert bsn["top1_share"] == "0.8490"  # user 3: 30.6 of 36.04166666


def test_the_offline_detector_matches_a_hand_computation():
    raw = load(SESSIONS)["sessions"]
    expected = []
    for s in raw:
        start = at(s["started_at"])
        ends = [at(s["last_heartbeat"]) + TIMEOUT, start + timedelta(hours=24)]
        if s["ended_at"]:
            ends.append(at(s["ended_at"]))
        covered = floor8(as_fraction(s["power"]) * Fraction(int((min(ends) - start).total_seconds()), 3600))
        excess = as_fraction(s["accrued"]) - covered
        if excess > Fraction(1, 10**8):
            expected.append((s["user_id"], s["started_at"], covered, excess))

    # The predecessor's case: heartbeats stopped 2 min in, ended 12 h 44 min later with 7.64 credited at 0.6/h.
    # Cover reaches last_heartbeat + 5 min = 7 min: 0.07 tokens, so 7.57 were paid for nobody mining.
    assert expected == [(2, "2024-05-01T12:00:00Z", Fraction("0.07"), Fraction("7.57"))]
    assert Fraction("0.6") * Fraction(12 * 60 + 44, 60) == Fraction("7.64")

    got = report_of("--sessions", SESSIONS, "--market", MARKET)["offline_mining"]
    assert got == [
        {"user_id": 2, "started_at": "2024-05-01T12:00:00Z", "accrued": "7.64", "covered": "0.07", "excess": "7.57"}
    ]


def test_one_base_unit_over_cover_is_rounding_not_offline_mining():
    # The fixture's user 4 was credited 0.29166667 for a cover worth 0.29166666: exactly 0.00000001 over.
    dataset = parse_sessions(load(SESSIONS))
    flagged = {(o["user_id"], o["started_at"]) for o in report.detect_offline_mining(dataset.sessions, TIMEOUT)}
    assert (4, "2024-05-02T14:00:00Z") not in flagged
    two_over = session(
        ended_at=at("2024-05-01T01:00:00Z"), last_heartbeat=at("2024-05-01T00:55:00Z"), accrued=Decimal("1.00000002")
    )
    assert report.detect_offline_mining((two_over,), TIMEOUT) == [
        {
            "user_id": 1,
            "started_at": "2024-05-01T00:00:00Z",
            "accrued": "1.00000002",
            "covered": "1",
            "excess": "0.00000002",
        }
    ]


def test_offline_mining_is_sorted_by_excess_then_user():
    ended = at("2024-05-01T10:00:00Z")
    sessions = tuple(
        session(user_id=uid, ended_at=ended, accrued=Decimal(credit))
        for uid, credit in [(5, "3"), (2, "9"), (3, "3"), (1, "0.05")]
    )
    # Each covered 5 min at 1/h = 0.08333333.
    assert [(o["user_id"], o["excess"]) for o in report.detect_offline_mining(sessions, TIMEOUT)] == [
        (2, "8.91666667"),
        (3, "2.91666667"),
        (5, "2.91666667"),
    ]


# ---- the other algorithms and the choice ----


def test_hamster_pays_offline_time_up_to_three_hours_and_calls_it_uncovered():
    got = report_of("--sessions", SESSIONS, "--market", MARKET)["algorithms"]
    # Only the offline session differs from bsn: paid to last_heartbeat + 3 h = 3 h 2 min x 0.6 = 1.82,
    # of which 7 min (0.07) was heartbeat-covered.
    assert got["hamster"]["uncovered_tokens"] == "1.75"
    assert got["hamster"]["active_miner_tokens"] == got["bsn"]["active_miner_tokens"]
    assert Decimal(got["hamster"]["tokens_emitted"]) == Decimal(got["bsn"]["tokens_emitted"]) + Decimal("1.75")
    for name in ("bsn", "pi", "ice"):
        assert got[name]["uncovered_tokens"] == "0"


def test_hamster_ignores_a_heartbeat_timeout_longer_than_its_cap():
    long_timeout = timedelta(hours=5)
    ctx = algorithms.Context(heartbeat_timeout=long_timeout, now=None, user_count=1)
    s = session(ended_at=at("2024-05-01T10:00:00Z"))
    assert algorithms.Hamster().replay(s, ctx).tokens == Decimal(3)
    assert algorithms.Bsn().replay(s, ctx).tokens == Decimal(5)


@pytest.mark.parametrize(
    ("users", "halvings"),
    [(0, 0), (999, 0), (1000, 0), (9999, 0), (10000, 1), (12000, 1), (99999, 1), (100000, 2), (10**9, 6)],
)
def test_pi_halves_each_tenfold_growth_beyond_a_thousand_users(users, halvings):
    assert algorithms.pi_halvings(users) == halvings


def test_pi_rate_counts_at_most_five_circle_members():
    ctx = algorithms.Context(heartbeat_timeout=TIMEOUT, now=None, user_count=12000)
    assert algorithms.Pi().rate(session(security_circle=0), ctx) == Decimal("0.1")
    assert algorithms.Pi().rate(session(security_circle=2), ctx) == Decimal("0.14")
    assert algorithms.Pi().rate(session(security_circle=9), ctx) == Decimal("0.2")


def test_pi_uses_the_distinct_users_when_user_count_is_missing():
    dataset = parse_sessions({k: v for k, v in load(SESSIONS).items() if k != "user_count"})
    got = report.build_report(dataset, parse_market(load(MARKET)))
    # 4 users: no halving, base 0.2 (the fixture's 12,000 users give 0.1). Per session, floored:
    # user 1: 0.28/h x 2 h and x 3 h; user 2: 0.2/h x 7 min and x 155 min; user 3: 0.4/h x 24 h and x 1.5 h;
    # user 4: 0.2/h x 70 min and x 2 h.
    by_hand = [
        Fraction("0.56"),
        Fraction("0.84"),
        Fraction("0.02333333"),
        Fraction("0.51666666"),
        Fraction("9.6"),
        Fraction("0.6"),
        Fraction("0.23333333"),
        Fraction("0.4"),
    ]
    assert as_fraction(got["algorithms"]["pi"]["tokens_emitted"]) == sum(by_hand)
    assert any("4 distinct user(s)" in note for note in got["notes"])


@pytest.mark.parametrize(
    ("streak", "pct"), [(0, 0), (1, 2), (6, 2), (7, 5), (13, 5), (14, 9), (29, 9), (30, 20), (400, 20)]
)
def test_ice_streak_bands(streak, pct):
    assert algorithms.ice_streak_bonus_pct(streak) == pct


@pytest.mark.parametrize(("idle", "pct"), [(0, 0), (7, 0), (8, 1), (20, 13), (57, 50), (1000, 50)])
def test_ice_slashes_idle_balances(idle, pct):
    assert algorithms.ice_slash_pct(idle) == pct


def test_ice_replays_the_fixture_by_hand():
    got = report_of("--sessions", SESSIONS, "--market", MARKET)["algorithms"]["ice"]
    # user 1: 0.51/h x 5 h; user 2: 0.51/h x 162 min; user 3: 0.525/h less 2% x 25.5 h;
    # user 4: 0.6/h less 13% x 190 min.
    by_hand = Decimal("0.51") * 5 + Decimal("0.51") * 162 / 60 + Decimal("0.5145") * Decimal("25.5")
    by_hand += Decimal("0.522") * 190 / 60
    assert Decimal(got["tokens_emitted"]) == by_hand == Decimal("18.69975")


def test_top1_share_takes_one_percent_of_users_rounded_up():
    assert report.top1_share({}) == 0
    assert report.top1_share({1: Decimal(0), 2: Decimal(0)}) == 0
    assert report.top1_share({1: Decimal(3), 2: Decimal(1)}) == Decimal("0.75")
    many = {uid: Decimal(1) for uid in range(250)}
    many[0] = many[1] = many[2] = Decimal(10)  # 250 users: the top 1% is 3 users
    assert report.top1_share(many) == Decimal(30) / Decimal(277)


@pytest.mark.parametrize(
    ("budget", "best", "within"),
    [
        ("1000", "bsn", {"bsn", "pi", "ice", "hamster"}),  # bsn and hamster pay active miners alike: bsn by name
        ("17", "bsn", {"bsn", "pi", "ice"}),  # hamster's 17.78/day is over
        ("10", "ice", {"pi", "ice"}),
        ("1", "pi", set()),  # none within: the lowest daily emission
    ],
)
def test_best_algorithm_follows_the_stated_objective(budget, best, within):
    got = report_of("--sessions", SESSIONS, "--market", MARKET, "--daily-budget", budget)
    assert got["best_algorithm"] == best
    assert {name for name, m in got["algorithms"].items() if m["within_budget"]} == within
    assert got["daily_budget"] == budget


# ---- minimal mode, determinism, the clock ----


def test_empty_sessions_give_a_minimal_report(tmp_path):
    empty = tmp_path / "sessions.json"
    empty.write_text('{"sessions": []}')
    got = report_of("--sessions", str(empty))
    assert got["mode"] == "minimal" and got["sessions"] == 0 and got["users"] == 0
    assert got["generated_at"] is None and got["window"] == {"from": None, "to": None, "days": "0"}
    assert got["total_profit"] == "0" and got["offline_mining"] == []
    for metrics in got["algorithms"].values():
        assert metrics["tokens_emitted"] == metrics["value"] == metrics["daily_emission"] == "0"
        assert metrics["top1_share"] == "0.0000" and metrics["within_budget"] is True
    with_market = report_of("--sessions", str(empty), "--market", MARKET)
    assert with_market["mode"] == "minimal" and with_market["generated_at"] == "2024-05-03T10:00:00Z"


def test_no_market_gives_a_minimal_report_with_zero_values():
    full = report_of("--sessions", SESSIONS, "--market", MARKET)
    got = report_of("--sessions", SESSIONS)
    assert got["mode"] == "minimal" and got["total_profit"] == "0"
    assert any("no market data" in note for note in got["notes"])
    for name, metrics in got["algorithms"].items():
        assert metrics["value"] == "0"
        assert metrics["tokens_emitted"] == full["algorithms"][name]["tokens_emitted"]
    assert got["offline_mining"] == full["offline_mining"]


def test_the_same_input_gives_the_same_bytes_in_any_session_order(tmp_path):
    first = run("--sessions", SESSIONS, "--market", MARKET)
    second = run("--sessions", SESSIONS, "--market", MARKET)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    shuffled = load(SESSIONS)
    shuffled["sessions"].reverse()
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(shuffled))
    assert run("--sessions", str(path), "--market", MARKET).stdout == first.stdout


def test_now_bounds_open_sessions_and_is_reported():
    later = report_of("--sessions", SESSIONS, "--market", MARKET, "--now", "2024-05-04T00:00:00Z")
    base = report_of("--sessions", SESSIONS, "--market", MARKET)
    assert later["generated_at"] == "2024-05-04T00:00:00Z"
    # The open session's heartbeat covers 5 more minutes once "now" is past them: 0.25/h x 5 min.
    extra = Decimal(later["algorithms"]["bsn"]["tokens_emitted"]) - Decimal(base["algorithms"]["bsn"]["tokens_emitted"])
    assert extra == Decimal("0.02083333")


def test_amounts_are_plain_decimal_strings_with_at_most_8_places():
    got = report_of("--sessions", SESSIONS, "--market", MARKET)
    amount = re.compile(r"\d+(\.\d{0,7}[1-9])?")  # no exponent, no trailing zeros, at most 8 places
    amounts = [got["daily_budget"], got["total_profit"], got["window"]["days"]]
    for metrics in got["algorithms"].values():
        assert re.fullmatch(r"[01]\.\d{4}", metrics["top1_share"])
        amounts += [metrics[k] for k in ("tokens_emitted", "value", "uncovered_tokens", "active_miner_tokens")]
        amounts.append(metrics["daily_emission"])
    for item in got["offline_mining"]:
        amounts += [item["accrued"], item["covered"], item["excess"]]
    assert amounts and all(isinstance(a, str) and amount.fullmatch(a) for a in amounts), amounts


# ---- bad input and isolation ----


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"sessions": [', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"sessions": {}}', '"sessions" must be a list'),
        ('{"sessions": [{"user_id": 1}]}', "missing 'started_at'"),
        (
            '{"sessions": [{"user_id": 1, "started_at": "2024-05-01T00:00:00Z", "last_heartbeat": "x",'
            ' "power": "1", "accrued": "0"}]}',
            "last_heartbeat: not an ISO 8601 timestamp",
        ),
        (
            '{"sessions": [{"user_id": 1, "started_at": "2024-05-01T00:00:00Z",'
            ' "last_heartbeat": "2024-05-01T00:00:00Z", "power": true, "accrued": "0"}]}',
            "power: expected a decimal string",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(tmp_path, content, fragment):
    path = tmp_path / "sessions.json"
    path.write_text(content)
    done = run("--sessions", str(path))
    assert done.returncode == 2 and done.stdout == b""
    message = done.stderr.decode()
    assert message.count("\n") == 1 and message.startswith("workers.optimizer: error:")
    assert fragment in message


@pytest.mark.parametrize(
    "args",
    [
        ["--sessions", "/nonexistent/sessions.json"],
        ["--sessions", SESSIONS, "--market", "/nonexistent/market.json"],
        ["--sessions", SESSIONS, "--market", SESSIONS],
        ["--sessions", SESSIONS, "--daily-budget", "lots"],
        ["--sessions", SESSIONS, "--heartbeat-timeout", "5m"],
        ["--sessions", SESSIONS, "--now", "yesterday"],
        ["--market", MARKET],
        ["--sessions", SESSIONS, "--frobnicate"],
    ],
)
def test_bad_arguments_exit_2_with_one_line_on_stderr(args):
    done = run(*args)
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().count("\n") == 1


def test_direct_parsing_rejects_out_of_order_times():
    doc = load(SESSIONS)
    doc["sessions"][0]["ended_at"] = "2024-04-30T00:00:00Z"
    with pytest.raises(InputError, match="ended_at is before started_at"):
        parse_sessions(doc)


def test_market_price_is_the_last_at_or_before_the_instant():
    market = parse_market(load(MARKET))
    assert market.price_at(at("2024-05-02T00:00:00Z")) == (Decimal("0.012"), True)
    assert market.price_at(at("2024-05-01T23:59:59Z")) == (Decimal("0.011"), True)
    assert market.price_at(at("2024-05-01T08:00:00Z")) == (Decimal("0.010"), False)  # before the first quote
    assert Market().price_at(at("2024-05-01T08:00:00Z")) == (Decimal(0), True)


def test_it_runs_on_the_bare_standard_library_without_bsn_flask_or_sqlalchemy():
    # -S: no site-packages at all, so any third-party import would fail here.
    done = run("--sessions", SESSIONS, "--market", MARKET, python_flags=("-S",))
    assert done.returncode == 0, done.stderr.decode()
    with open(EXPECTED, "rb") as handle:
        assert done.stdout == handle.read()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, workers.optimizer.__main__, workers.optimizer.report; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'bsn', 'flask', 'sqlalchemy', 'redis'}))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_sessions_ending_before_the_first_quote_are_valued_at_it_and_noted():
    dataset = parse_sessions(load(SESSIONS))
    market = Market((at("2024-05-02T00:00:00Z"),), (Decimal("2"),))
    got = report.build_report(dataset, market)
    # bsn: 1.212 + 0.07 end on 1 May, before the only quote; everything is valued at 2 USD.
    assert got["total_profit"] == str(Decimal(got["algorithms"]["bsn"]["tokens_emitted"]) * 2)
    assert "before the first market price, valued at that first price: bsn 2, pi 2, ice 2, hamster 2" in got["notes"][0]


def test_without_now_generated_at_is_the_latest_input_timestamp_not_the_clock():
    assert report_of("--sessions", SESSIONS)["generated_at"] == "2024-05-03T11:00:00Z"  # a session's last heartbeat
    # A market quote later than every session moves it (and lets the open session's heartbeat cover run out).
    dataset, market = parse_sessions(load(SESSIONS)), parse_market(load(MARKET))
    later = Market((*market.times, at("2024-05-05T00:00:00Z")), (*market.prices, Decimal("0.02")))
    assert report.build_report(dataset, later)["generated_at"] == "2024-05-05T00:00:00Z"
