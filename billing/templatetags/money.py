from django import template

from billing.money import format_micros

register = template.Library()


@register.filter
def micros(value) -> str:
    """2_500_000 -> '2.5' (an amount of micro-units in its currency's units)."""
    return format_micros(int(value or 0))
