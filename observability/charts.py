"""A server-rendered SVG bar chart of spend by day and model: no JavaScript, no library."""

from __future__ import annotations

from datetime import date, timedelta
from html import escape

from billing.money import format_micros

PALETTE = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4338ca"]
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 720, 240, 56, 28


def spend_chart_svg(rows: list[dict], *, first_day: date, days: int) -> dict:
    """Stacked bars, one per day, one colour per model. Amounts in micro-units of one currency
    do not add across currencies: the chart shows the Credit currency's (USD) spend, and the
    Wallet's when that is all there is."""
    currencies = sorted({r["currency"] for r in rows if r["currency"]})
    currency = "USD" if "USD" in currencies else (currencies[0] if currencies else "USD")
    by_day: dict[date, dict[str, int]] = {}
    for row in rows:
        if row["currency"] != currency or not row["cost_micros"]:
            continue
        models = by_day.setdefault(row["day"], {})
        models[row["model"]] = models.get(row["model"], 0) + row["cost_micros"]
    models = sorted({m for d in by_day.values() for m in d})
    colours = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    top = max((sum(d.values()) for d in by_day.values()), default=0)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - 8
    bar_w = plot_w / days
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" class="chart" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Spend by day and model, {currency}</title>',
        f'<line x1="{PAD_LEFT}" y1="{8 + plot_h}" x2="{WIDTH - 8}" y2="{8 + plot_h}" stroke="#555"/>',
        f'<text x="{PAD_LEFT - 6}" y="14" text-anchor="end" font-size="11">{format_micros(top)}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{8 + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i in range(days):
        day = first_day + timedelta(days=i)
        x = PAD_LEFT + i * bar_w
        y = 8 + plot_h
        for model, micros in sorted(by_day.get(day, {}).items()):
            h = plot_h * micros / top if top else 0
            y -= h
            parts.append(
                f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar_w - 4:.1f}" height="{h:.1f}" fill="{colours[model]}">'
                f"<title>{day.isoformat()} {escape(model)}: {format_micros(micros)} {currency}</title></rect>"
            )
        if i % 2 == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="10">{day:%m-%d}</text>'
            )
    parts.append("</svg>")
    return {
        "svg": "".join(parts),
        "legend": [{"model": m, "colour": colours[m]} for m in models],
        "currency": currency,
        "is_empty": not by_day,
    }
