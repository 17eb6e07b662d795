"""Text or a Decimal checked against the DecimalField that will keep it, before it gets there.

A value beyond the field's digits is refused by PostgreSQL but stored by SQLite, where every
later read of the row fails (decimal.InvalidOperation); one with more decimal places is
silently rounded, so 0.00001 reads back as 0. Both are refused here, with one line naming
the value's meaning and the range it must be in."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def decimal_for_field(value, *, field, what: str, minimum: Decimal | None = None) -> Decimal:
    """`value` as a Decimal `field` (a models.DecimalField) holds exactly, not below `minimum`
    (default: the field's most negative). Raises ValueError naming `what`."""
    step = Decimal(1).scaleb(-field.decimal_places)
    largest = Decimal(10) ** (field.max_digits - field.decimal_places) - step
    lowest = -largest if minimum is None else minimum
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what} {str(value)[:40]!r} is not a number") from None
    if not number.is_finite() or not lowest <= number <= largest:
        raise ValueError(f"{what} must be a number from {lowest} to {largest}")
    if number != number.quantize(step):
        raise ValueError(f"{what} {str(value)[:40]!r} has more than {field.decimal_places} decimal places")
    return number
