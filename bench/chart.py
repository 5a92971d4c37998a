"""Draw the results page's charts and tables from the measured figures.

``python bench/chart.py`` reads ``bench/results/fullstack.json`` (``bench_fullstack.py
--json``), ``bench/results/coldstart.json`` (``bench_coldstart.py --json``) and
``bench/results/ablation.json`` (``profile_fullstack.py --ablate --json``), writes plain
SVG bar charts next to ``docs/benchmarks.md`` (no plotting library needed) and rewrites the
tables between the ``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers of that page, so
the figures on the page are exactly the ones in the files.
"""

from __future__ import annotations

import json
import re
import sys
from html import escape
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"

LABELS = {
    "starlette": "bare Starlette",
    "fastapi": "bare FastAPI (baseline)",
    "popular": "popular assembly",
    "saasfw": "saasfw full stack",
    "saasfw-fleet": "saasfw full stack, fleet shape (Redis, OTLP)",
    "saasfw-notel": "saasfw, FastAPI tracing off",
}
COLOURS = {
    "popular": "#c0504d",
    "saasfw": "#2e75b6",
    "saasfw-fleet": "#1f4e79",
    "saasfw-notel": "#9dc3e6",
}
GREY = "#9e9e9e"


def bars(
    title: str,
    rows: list[tuple[str, float, str]],
    *,
    target: float | None,
    target_label: str,
    unit: str = "",
    more_targets: tuple[tuple[float, str], ...] = (),
    width: int = 720,
    left: int = 190,
) -> str:
    """A horizontal bar chart: (label, value, colour) rows, optional target lines."""
    right, bar_h, gap, top = 70, 26, 12, 48
    height = top + len(rows) * (bar_h + gap) + 40 + 16 * len(more_targets)
    scale_max = max([v for _, v, _ in rows] + [target or 0.0] + [t for t, _ in more_targets])
    scale_max = scale_max * 1.1 or 1.0
    plot_w = width - left - right

    def x(value: float) -> float:
        return left + plot_w * value / scale_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value, colour) in enumerate(rows):
        y = top + i * (bar_h + gap)
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h * 0.68:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        parts.append(
            f'<rect x="{left}" y="{y}" width="{x(value) - left:.1f}" height="{bar_h}" '
            f'fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{x(value) + 6:.1f}" y="{y + bar_h * 0.68:.1f}">{value:.2f}{unit}</text>'
        )
    lines = ([(target, target_label)] if target is not None else []) + list(more_targets)
    for i, (value, label) in enumerate(lines):
        tx = x(value)
        bottom = top + len(rows) * (bar_h + gap)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{bottom}" '
            'stroke="#333" stroke-dasharray="5,4" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{bottom + 18 + 16 * i}" text-anchor="middle" fill="#333">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _fullstack_table(data: dict[str, Any]) -> str:
    lines = [
        "| app | median req/s | ratio to bare FastAPI | paired ratio | mean latency (ms) |",
        "|---|---|---|---|---|",
    ]
    for app in data["apps"]:
        latency = sorted(app["mean_latency_ms"])[len(app["mean_latency_ms"]) // 2]
        lines.append(
            f"| {LABELS.get(app['app'], app['app'])} | {app['median_rps']:.0f} "
            f"| **{app['ratio']:.2f}** | {app['paired_ratio']:.2f} | {latency:.1f} |"
        )
    lines.append("")
    lines.append(
        f"Measured {data['measured_at']}, {data['rounds']} rounds of {data['duration_s']:.0f} s, "
        f"{data['connections']} connections; load average {data['load_average_before']} "
        f"before, {data['load_average_after']} after."
    )
    return "\n".join(lines)


def _coldstart_table(data: dict[str, Any]) -> str:
    lines = [
        "| median | bare FastAPI | FastAPI + SQLAlchemy | saasfw example | ratio "
        "| ratio to FastAPI + SQLAlchemy |",
        "|---|---|---|---|---|---|",
    ]
    for f in data["figures"]:
        lines.append(
            f"| {f['label']} | {f['fastapi']:.3f} | {f['fastapi_sqla']:.3f} | {f['saasfw']:.3f} "
            f"| **{f['ratio']:.2f}** | {f['ratio_to_fastapi_sqla']:.2f} |"
        )
    lines.append("")
    lines.append(
        f"Measured {data['measured_at']}, {data['rounds']} samples each; load average "
        f"{data['load_average_before']} before, {data['load_average_after']} after."
    )
    return "\n".join(lines)


def _ablation_table(data: dict[str, Any]) -> str:
    rows = data["variants"]
    full = rows[1]["cpu_us"]
    lines = ["| variant | CPU µs per request | the piece costs |", "|---|---|---|"]
    lines.append(f"| {rows[0]['variant']} | {rows[0]['cpu_us']:.0f} | |")
    lines.append(f"| {rows[1]['variant']} | {full:.0f} | |")
    for row in rows[2:-1]:
        lines.append(
            f"| ... without {row['variant']} | {row['cpu_us']:.0f} | {full - row['cpu_us']:.0f} |"
        )
    last = rows[-1]
    lines.append(f"| {last['variant']} | {last['cpu_us']:.0f} | |")
    lines.append("")
    lines.append(f"{data['requests']} requests per variant, in batches of {data['batch']}.")
    return "\n".join(lines)


def _replace_block(page: str, name: str, content: str) -> str:
    pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(\n<!-- END {name} -->)", re.S)
    if not pattern.search(page):
        raise SystemExit(f"docs/benchmarks.md has no {name} markers")
    return pattern.sub(lambda m: m.group(1) + content + m.group(2), page)


def main() -> int:
    fullstack = json.loads((RESULTS / "fullstack.json").read_text())
    rows = [
        (LABELS.get(app["app"], app["app"]), float(app["ratio"]), COLOURS.get(app["app"], GREY))
        for app in fullstack["apps"]
    ]
    (DOCS / "benchmarks-fullstack.svg").write_text(
        bars(
            "Requests/second as a ratio to bare FastAPI (median of interleaved rounds)",
            rows,
            target=0.5,
            target_label="saasfw target 0.5",
        )
    )
    coldstart = json.loads((RESULTS / "coldstart.json").read_text())
    figures = {f["figure"]: f for f in coldstart["figures"]}
    light = COLOURS["saasfw-notel"]
    rows = [
        ("import + build", figures["import_build_s"]["ratio"], COLOURS["saasfw"]),
        ("import + build, CPU", figures["import_build_cpu_s"]["ratio"], COLOURS["saasfw"]),
        ("RSS after start-up", figures["rss_mb"]["ratio"], COLOURS["saasfw"]),
        (
            "CPU vs FastAPI+SQLAlchemy",
            figures["import_build_cpu_s"]["ratio_to_fastapi_sqla"],
            light,
        ),
        ("RSS vs FastAPI+SQLAlchemy", figures["rss_mb"]["ratio_to_fastapi_sqla"], light),
    ]
    (DOCS / "benchmarks-coldstart.svg").write_text(
        bars(
            "Cold start: saasfw example / bare FastAPI (median of fresh processes)",
            rows,
            target=1.5,
            target_label="target 1.5",
            unit="x",
        )
    )
    page_path = DOCS / "benchmarks.md"
    page = page_path.read_text()
    page = _replace_block(page, "fullstack-table", _fullstack_table(fullstack))
    page = _replace_block(page, "coldstart-table", _coldstart_table(coldstart))
    ablation = RESULTS / "ablation.json"
    if ablation.exists():
        page = _replace_block(
            page, "ablation-table", _ablation_table(json.loads(ablation.read_text()))
        )
    page_path.write_text(page)
    print("wrote docs/benchmarks-fullstack.svg, docs/benchmarks-coldstart.svg, docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
