"""Exact numbers and times: decimal strings and ISO 8601 timestamps in, decimal strings and ISO Z strings out."""

from __future__ import annotations

import decimal
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

# Wide enough that a sum of products of 8-place amounts never rounds: every intermediate stays exact.
CONTEXT = decimal.Context(
    prec=60,
    rounding=ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
PLACES = Decimal("0.00000001")  # 8 places: BSN's base unit, 10^-8 token
SHARE_PLACES = Decimal("0.0001")
MAX_AMOUNT = Decimal(10) ** 12  # far above any rate, price or balance; keeps every product inside CONTEXT
HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US


class InputError(ValueError):
    """Bad input: the CLI prints the message on one line and exits 2."""


def parse_decimal(value: object, field: str, *, minimum: Decimal | None = Decimal(0)) -> Decimal:
    """A decimal string (or a JSON number, which the loader already parsed exactly) as a finite Decimal."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InputError(f'{field}: expected a decimal string such as "0.5", got {type(value).__name__}')
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except decimal.InvalidOperation:
        raise InputError(f"{field}: not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise InputError(f"{field}: not a finite number: {value!r}")
    if minimum is not None and number < minimum:
        raise InputError(f"{field}: must be at least {minimum}, got {value!r}")
    if abs(number) > MAX_AMOUNT:
        raise InputError(f"{field}: too large: {value!r}")
    return number


def parse_int(value: object, field: str, *, minimum: int = 0) -> int:
    # bool is an int subclass; true/false for a count is a shape error, not 1/0.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise InputError(f"{field}: must be at least {minimum}, got {value}")
    return value


def parse_time(value: object, field: str) -> datetime:
    """ISO 8601 to an aware UTC datetime; a timestamp without an offset is taken as UTC, as BSN writes them."""
    if not isinstance(value, str):
        raise InputError(f"{field}: expected an ISO 8601 timestamp string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{field}: not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def micros(delta: timedelta) -> int:
    """A duration in whole microseconds (never negative), so hours are exact fractions, not floats."""
    return max(0, delta // timedelta(microseconds=1))


def floor8(value: Decimal) -> Decimal:
    """Round down to 8 places, as BSN's integer base units do when a session accrues."""
    return value.quantize(PLACES, rounding=ROUND_DOWN, context=CONTEXT)


def round8(value: Decimal) -> Decimal:
    return value.quantize(PLACES, rounding=ROUND_HALF_EVEN, context=CONTEXT)


def fmt_amount(value: Decimal) -> str:
    """At most 8 places, shortest exact form, never an exponent: Decimal("12.50000000") -> "12.5"."""
    text = format(round8(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_share(value: Decimal) -> str:
    """A share of 1 with exactly 4 places: "0.4567"."""
    return format(value.quantize(SHARE_PLACES, rounding=ROUND_HALF_EVEN, context=CONTEXT), "f")


def fmt_time(value: datetime | None) -> str | None:
    """UTC with a Z, the same form BSN's exporter writes."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
