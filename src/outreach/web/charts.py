"""Charts for the admin pages, drawn as SVG on the server: no script, no CDN, works offline.

Pure functions from numbers and labels to markup. Every label is escaped (city and region names
come from imported contact files); colours and sizes come only from this module. The SVG uses
presentation attributes, never ``style``, so the admin pages' Content-Security-Policy holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#1f6feb", "#d97706", "#15803d", "#9333ea", "#dc2626")
_ID = re.compile(r"[^a-z0-9-]")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[int]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float  # 0.0 to 1.0
    note: str


def _text(value: str) -> str:
    return escape(value, quote=True)


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, 100 ... that is at least ``value``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if magnitude * factor >= value:
                return magnitude * factor
        magnitude *= 10


def _open(chart_id: str, title: str, description: str, width: int, height: int) -> list[str]:
    safe_id = _ID.sub("-", chart_id.lower()) or "chart"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{safe_id}" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="{safe_id}-title {safe_id}-desc" {FONT}>',
        f'<title id="{safe_id}-title">{_text(title)}</title>',
        f'<desc id="{safe_id}-desc">{_text(description)}</desc>',
    ]


def line_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    width: int = 720,
    height: int = 260,
) -> Markup:
    """One line per series over the buckets named by ``labels``, with a legend."""
    total = sum(sum(s.values) for s in series)
    description = "; ".join(f"{s.name}: {sum(s.values)}" for s in series)
    parts = _open(chart_id, title, description or "no data", width, height)
    if not labels or total == 0:
        parts.append(
            f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" fill="#666">'
            "Nothing to show yet</text></svg>"
        )
        return Markup("".join(parts))
    left, right, top, bottom = 44, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max(max(s.values, default=0) for s in series))
    step_x = plot_w / max(len(labels) - 1, 1)

    def x(i: int) -> float:
        return left + i * step_x if len(labels) > 1 else left + plot_w / 2

    def y(v: int) -> float:
        return top + plot_h - (v / peak) * plot_h

    for tick in sorted({0, peak // 2, peak}):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#ddd"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'fill="#444">{tick}</text>'
        )
    every = max(1, round(len(labels) / 6))
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            anchor = "start" if i == 0 else ("end" if i == len(labels) - 1 else "middle")
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="{anchor}" '
                f'fill="#444">{_text(label)}</text>'
            )
    for n, serie in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(serie.values))
        parts.append(
            f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"/>'
        )
        for i, v in enumerate(serie.values):
            if v:
                label = labels[i] if i < len(labels) else ""
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                    f"<title>{_text(serie.name)}, {_text(label)}: {v}</title></circle>"
                )
        legend_x = left + n * 170
        parts.append(
            f'<rect x="{legend_x}" y="8" width="12" height="12" fill="{colour}"/>'
            f'<text x="{legend_x + 18}" y="18" fill="#222">{_text(serie.name)} '
            f"({sum(serie.values)})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(*, chart_id: str, title: str, bars: Sequence[Bar], width: int = 720) -> Markup:
    """Horizontal bars, one per label, each filled to ``value`` (0 to 1) and annotated."""
    row, top, label_w, note_w = 28, 8, 180, 150
    height = top * 2 + row * max(len(bars), 1)
    description = "; ".join(f"{b.label}: {b.note}" for b in bars)
    parts = _open(chart_id, title, description or "no data", width, height)
    if not bars:
        parts.append(
            f'<text x="{width // 2}" y="{height // 2 + 4}" text-anchor="middle" fill="#666">'
            "Nothing to show yet</text></svg>"
        )
        return Markup("".join(parts))
    track = width - label_w - note_w
    for i, bar in enumerate(bars):
        y = top + i * row
        share = min(max(bar.value, 0.0), 1.0)
        shown = bar.label if len(bar.label) <= 26 else bar.label[:25] + "…"
        parts.append(
            f'<g class="bar"><title>{_text(bar.label)}: {_text(bar.note)}</title>'
            f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end" fill="#222">'
            f"{_text(shown)}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{track}" height="{row - 8}" fill="#eee"/>'
            f'<rect x="{label_w}" y="{y + 4}" width="{track * share:.1f}" height="{row - 8}" '
            f'fill="{PALETTE[2]}"/>'
            f'<text x="{label_w + track + 8}" y="{y + 18}" fill="#222">{_text(bar.note)}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
