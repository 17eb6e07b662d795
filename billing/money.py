"""Amounts as integers of micro-units, and the only places where text becomes money."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

MICROS = 1_000_000
MAX_MICROS = 10**15  # a billion currency units: far above any real amount, far below BIGINT
MAX_BALANCE_MICROS = 2**63 - 1  # what a balance's BIGINT column holds


def parse_micros(text: str | int | float | Decimal, *, what: str = "amount") -> int:
    """'2.5' -> 2_500_000. Refuses more precision than a micro-unit rather than rounding, and
    more than ±`MAX_MICROS`, which no column needs and a few would not hold."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{what} {text!r} is not a finite number")
    # before int(): '1e999990' is finite, and its int() runs for a minute
    if value.copy_abs() > Decimal(MAX_MICROS).scaleb(-6):
        raise ValueError(f"{what} must be between -{format_micros(MAX_MICROS)} and {format_micros(MAX_MICROS)}")
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise ValueError(f"{what} {text!r} has more than 6 decimal places")
    return int(micros)


def format_micros(amount_micros: int) -> str:
    sign = "-" if amount_micros < 0 else ""
    whole, frac = divmod(abs(amount_micros), MICROS)
    return f"{sign}{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else f"{sign}{whole}"


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def decimal_ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))
