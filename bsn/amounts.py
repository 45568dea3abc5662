"""Token amounts: integers of base units (10^-8 token) inside, decimal strings outside, never floats."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from bsn.errors import ValidationError

DECIMALS = 8
UNIT = 10**DECIMALS
MAX_UNITS = 10**18  # far above any supply; keeps every amount inside a BIGINT


def to_units(value: str | int | Decimal, field: str = "amount", *, positive: bool = True) -> int:
    """Parse a decimal string such as "12.5" into base units; ValidationError names `field` otherwise."""
    if isinstance(value, bool | float):
        raise ValidationError(fields={field: ['Send amounts as decimal strings, e.g. "12.5".']})
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError(fields={field: ["Not a decimal number."]}) from None
    if not number.is_finite():
        raise ValidationError(fields={field: ["Not a decimal number."]})
    # Checked before any arithmetic: "1e1000000" would overflow the decimal context.
    if number.adjusted() > 18:
        raise ValidationError(fields={field: ["Too large."]})
    if number.as_tuple().exponent < -DECIMALS and number != number.quantize(Decimal(1).scaleb(-DECIMALS)):
        raise ValidationError(fields={field: [f"At most {DECIMALS} decimal places."]})
    units = int(number * UNIT)
    if positive and units <= 0:
        raise ValidationError(fields={field: ["Must be greater than zero."]})
    if abs(units) > MAX_UNITS:
        raise ValidationError(fields={field: ["Too large."]})
    return units


def to_str(units: int) -> str:
    """Base units as the shortest exact decimal string: 1250000000 -> "12.5", 1 -> "0.00000001"."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNIT)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{DECIMALS}d}".rstrip("0")
