"""Charts as inline SVG strings, drawn in Python so the dashboard is one self-contained file: no
JavaScript, no CDN, nothing fetched when an analyst opens it offline or attaches it to an incident.

Two shapes cover every question the dashboard asks: stacked columns over time (cost and calls by
model) and grouped horizontal bars over categories (latency percentiles, rates, error counts). Every
bar carries a ``<title>`` so hovering shows the exact number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0891b2", "#db2777", "#65a30d")
"""Series colours, distinct under the common colour-vision deficiencies' worst pairs; the browser
test looks for them in the screenshot to know the bars were painted."""

Formatter = Callable[[float], str]

_FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="#475569"'


def nice_ticks(top: float, count: int = 4, whole: bool = False) -> list[float]:
    """Round tick values from 0 to at least ``top`` (1-2-5 steps), so axes read like a person drew them;
    ``whole`` keeps counts from getting fractional ticks."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1.0, math.ceil(step))
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _text(x: float, y: float, content: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {_FONT}>{escape(content)}</text>'


def _clip(text: str, limit: int) -> str:
    """Long model names would run off the chart; the full name stays in each bar's tooltip."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        cx = x + (i % 4) * 170
        cy = y + (i // 4) * 16
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{cx:.1f}" y="{cy - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(cx + 14, cy, _clip(name, 24)))
    return parts


def _legend_height(names: Sequence[str]) -> float:
    return 16 * math.ceil(len(names) / 4) + 6


def stacked_columns(
    buckets: Sequence[datetime],
    series: Mapping[str, Sequence[float]],
    value_format: Formatter,
    time_format: str = "%H:%M",
    width: int = 680,
    height: int = 260,
    whole: bool = False,
) -> str:
    """Columns per time bucket, one stacked segment per series (e.g. cost by model per hour)."""
    names = list(series)
    left, right, top = 64.0, 12.0, 12.0
    bottom = 28.0 + _legend_height(names)
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(series[n][i] for n in names) for i in range(len(buckets))]
    ticks = nice_ticks(max(totals, default=0.0), whole=whole)
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot * 0.72, 1.0)
    parts = _y_axis(ticks, scale, left, top, plot_w, plot_h, value_format)
    label_every = max(1, math.ceil(len(buckets) / 8))
    for i, bucket in enumerate(buckets):
        x = left + i * slot + (slot - bar_w) / 2
        base = top + plot_h
        for j, name in enumerate(names):
            value = series[name][i]
            if value <= 0:
                continue
            h = value * scale
            base -= h
            tip = f"{bucket:%Y-%m-%d %H:%M:%S} · {name}: {value_format(value)}"
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(tip)}</title></rect>'
            )
        if i % label_every == 0:
            parts.append(_text(x + bar_w / 2, top + plot_h + 16, bucket.strftime(time_format), "middle"))
    parts += _legend(names, left, height - _legend_height(names) + 10)
    return _svg(width, height, parts)


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    value_format: Formatter,
    width: int = 680,
    max_value: float | None = None,
    whole: bool = False,
) -> str:
    """Horizontal bars, one group per category and one bar per series (e.g. p50/p95/p99 per model)."""
    names = list(series)
    label_w, right, top = 200.0, 70.0, 8.0
    bar_h, gap = 12.0, 10.0
    group_h = bar_h * len(names) + gap
    plot_w = width - label_w - right
    legend_h = _legend_height(names) if len(names) > 1 else 0.0
    height = int(top + group_h * len(categories) + 24 + legend_h)
    peak = max((v for n in names for v in series[n]), default=0.0)
    ticks = nice_ticks(max_value if max_value is not None else peak, whole=whole)
    scale = plot_w / ticks[-1]
    parts = []
    axis_y = top + group_h * len(categories)
    for tick in ticks:
        x = label_w + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{axis_y:.1f}" stroke="#e2e8f0"/>')
        parts.append(_text(x, axis_y + 14, value_format(tick), "middle"))
    for i, category in enumerate(categories):
        y0 = top + i * group_h
        parts.append(_text(label_w - 8, y0 + group_h / 2, _clip(category, 30), "end"))
        for j, name in enumerate(names):
            value = series[name][i]
            y = y0 + j * bar_h
            w = max(value * scale, 0.0)
            tip = f"{category} · {name}: {value_format(value)}"
            parts.append(
                f'<rect class="bar" x="{label_w:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h - 2:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(tip)}</title></rect>'
            )
            parts.append(_text(label_w + w + 4, y + bar_h - 3, value_format(value)))
    if len(names) > 1:
        parts += _legend(names, label_w, height - legend_h + 10)
    return _svg(width, height, parts)


def _y_axis(
    ticks: Sequence[float],
    scale: float,
    left: float,
    top: float,
    plot_w: float,
    plot_h: float,
    fmt: Formatter,
) -> list[str]:
    parts = []
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(
            f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
        )
        parts.append(_text(left - 6, y + 4, fmt(tick), "end"))
    return parts


def _svg(width: int, height: int, parts: list[str]) -> str:
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img">{body}</svg>'
    )
