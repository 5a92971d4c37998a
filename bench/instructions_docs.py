"""Write the instruction-count figures into ``docs/benchmarks.md`` and draw their chart.

``python bench/instructions_docs.py`` reads ``bench/results/instructions.json``
(``bench_instructions.py --json``) and, when present, ``bench/results/instructions-profile.json``
(``cg_profile.py --json``); it rewrites the blocks between ``<!-- BEGIN instructions-table -->``
and ``<!-- BEGIN instructions-profile -->`` and their ``END`` markers, and writes
``docs/benchmarks-instructions.svg`` (plain SVG, ``chart.bars``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from chart import GREY, _replace_block, bars  # noqa: E402

ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCS = ROOT / "docs"
LABELS = {
    "null": "no app (in process: the driver; over HTTP: uvicorn + h11)",
    "starlette": "bare Starlette",
    "fastapi": "bare FastAPI (baseline)",
    "litestar": "Litestar + its contribs",
    "popular": "popular assembly",
    "saasfw-single": "saasfw, one process",
    "saasfw-fleet": "saasfw, fleet shape",
}
TOKEN = {"reuse": "one token", "fresh": "new token each request"}
COLOURS = {
    "popular": "#c0504d",
    "litestar": "#e6a23c",
    "saasfw-single": "#2e75b6",
    "saasfw-fleet": "#1f4e79",
}


def _redis(row: dict[str, Any]) -> str:
    redis = row.get("redis")
    if not redis:
        return ""
    from bench_instructions import _redis_text

    return _redis_text(redis)


def _fmt(row: dict[str, Any] | None) -> tuple[str, str]:
    if row is None:
        return "", ""
    ratio = f"**{row['ratio']:.2f}**" if row["ratio"] is not None else ""
    return f"{row['per_request']:,.0f}", ratio


def table(data: dict[str, Any]) -> str:
    lines = [
        "| app | token | in process: instructions per request | ratio | over HTTP: "
        "instructions per request | ratio | Redis per request |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = {(r["app"], r.get("transport", "asgi"), r["mode"]): r for r in data["rows"]}
    seen: list[tuple[str, str]] = []
    for app, _, mode in rows:
        if (app, mode) not in seen:
            seen.append((app, mode))
    for app, mode in seen:
        asgi, http = rows.get((app, "asgi", mode)), rows.get((app, "http", mode))
        token = TOKEN[mode] if app not in {"null", "starlette", "fastapi"} else ""
        redis = _redis(asgi or http or {})
        lines.append(
            f"| {LABELS.get(app, app)} | {token} | {' | '.join(_fmt(asgi))} "
            f"| {' | '.join(_fmt(http))} | {redis} |"
        )
    lines.append("")
    notes = [
        f"Measured {data['measured_at']} (Python {data['python']}), windows of "
        f"{data['n1']} and {data['n2']} requests after a warm-up of {data['warmup']}; "
        "instructions per request = (I(N2) - I(N1)) / (N2 - N1); ratio = bare FastAPI's "
        "instructions per request over the app's, by the same transport."
    ]
    fleet = data.get("fleet_over_single")
    if fleet:
        notes.append(
            "saasfw fleet / saasfw one process: "
            + ", ".join(
                f"**{v:.2f}** ({'in process' if k.startswith('asgi') else 'over HTTP'}, "
                f"{TOKEN[k.split()[1]]})"
                for k, v in fleet.items()
            )
            + " times the instructions."
        )
    repeat = data.get("repeat")
    if repeat:
        name = repeat["app"].split("@")[0]
        notes.append(
            f"Repeatability: {LABELS.get(name, name)} measured twice in this run: "
            f"{' and '.join(f'{v:,.0f}' for v in repeat['per_request'])} "
            f"instructions per request, a spread of {repeat['spread'] * 100:.2f}%."
        )
    return "\n".join(lines) + "\n" + " ".join(notes)


def chart(data: dict[str, Any]) -> str:
    rows = []
    for r in data["rows"]:
        if r["ratio"] is None:
            continue
        label = LABELS.get(r["app"], r["app"]).removesuffix(" (baseline)")
        if r["app"] not in {"starlette", "fastapi"}:
            label += ", 1 token" if r["mode"] == "reuse" else ", new tokens"
        label += " (HTTP)" if r.get("transport") == "http" else " (ASGI)"
        colour = COLOURS.get(r["app"], GREY)
        if r.get("transport") != "http" and colour != GREY:
            colour = "#9dc3e6" if r["app"].startswith("saasfw") else "#f2c4c3"
        rows.append((label, float(r["ratio"]), colour))
    return bars(
        "Instructions per request: bare FastAPI's / the app's (callgrind; higher is cheaper)",
        rows,
        target=0.7,
        target_label="saasfw, one token: 0.7",
        more_targets=((0.5, "new token each request / fleet over HTTP: 0.5"),),
        width=940,
        left=380,
    )


def _percent(part: float, whole: float) -> str:
    return f"{part:,.0f} ({part / whole:.0%})" if whole else f"{part:,.0f}"


def profile_block(profile: dict[str, Any]) -> str:
    keys = list(profile)
    heads = [
        f"{profile[k]['app'].removeprefix('saasfw-')}, {TOKEN[profile[k]['mode']]}" for k in keys
    ]
    out = [
        "**Machine instructions per request by shared object (own instructions, callgrind):**",
        "",
    ]
    out.append("| object | " + " | ".join(heads) + " |")
    out.append("|---|" + "---|" * len(keys))
    objects: list[str] = []
    for k in keys:
        for row in profile[k]["machine"]["objects"][:7]:
            if row["object"] not in objects:
                objects.append(row["object"])
    for name in objects:
        cells = []
        for k in keys:
            mach = profile[k]["machine"]
            value = next((r["instructions"] for r in mach["objects"] if r["object"] == name), 0.0)
            cells.append(_percent(value, mach["per_request"]))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append(
        "| *total* | "
        + " | ".join(f"{profile[k]['machine']['per_request']:,.0f}" for k in keys)
        + " |"
    )
    out += ["", "**Python bytecodes per request by package (own; inclusive in brackets):**", ""]
    out.append("| package | " + " | ".join(heads) + " |")
    out.append("|---|" + "---|" * len(keys))
    packages: list[str] = []
    for k in keys:
        rows = sorted(profile[k]["bytecodes"]["packages"], key=lambda r: -r["self"])
        for row in rows[:10]:
            if row["package"] not in packages:
                packages.append(row["package"])
    for name in packages:
        cells = []
        for k in keys:
            rows = profile[k]["bytecodes"]["packages"]
            row = next((r for r in rows if r["package"] == name), None)
            cells.append(f"{row['self']:,.0f} ({row['inclusive']:,.0f})" if row else "")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append(
        "| *total* | "
        + " | ".join(f"{profile[k]['bytecodes']['opcodes_per_request']:,.0f}" for k in keys)
        + " |"
    )
    out += ["", "**The C functions with the most own instructions per request:**", ""]
    for k, head in zip(keys, heads, strict=True):
        top = profile[k]["machine"]["functions"][:6]
        out.append(
            f"- {head}: "
            + "; ".join(
                f"`{r['function'].split(': ', 1)[1]}` {r['instructions']:,.0f}" for r in top
            )
        )
    out += [
        "",
        "**Python functions with the most inclusive bytecodes per request** (middleware "
        "wrappers around the whole request left out):",
        "",
    ]
    for k, head in zip(keys, heads, strict=True):
        byte = profile[k]["bytecodes"]
        whole = byte["opcodes_per_request"]
        funcs = [
            r
            for r in byte["functions"]
            if r["inclusive"] < 0.6 * whole
            and not r["function"].startswith(("bench driver", "starlette", "fastapi", "stdlib"))
        ][:8]
        out.append(
            f"- {head}: " + "; ".join(f"`{r['function']}` {r['inclusive']:,.0f}" for r in funcs)
        )
    calls = [
        (head, profile[k]["bytecodes"].get("redis_calls", []))
        for k, head in zip(keys, heads, strict=True)
    ]
    if any(found for _, found in calls):
        out += ["", "**Redis round trips per request, by the function that sends them:**", ""]
        for head, found in calls:
            if found:
                out.append(
                    f"- {head}: "
                    + "; ".join(
                        f"{c['command']} from `{c['caller']}` {c['per_request']:.2f}" for c in found
                    )
                )
    return "\n".join(out)


def write_docs(data: dict[str, Any], profile: dict[str, Any] | None = None) -> None:
    page_path = DOCS / "benchmarks.md"
    page = _replace_block(page_path.read_text(), "instructions-table", table(data))
    if profile:
        page = _replace_block(page, "instructions-profile", profile_block(profile))
    page_path.write_text(page)
    (DOCS / "benchmarks-instructions.svg").write_text(chart(data))
    print("wrote docs/benchmarks-instructions.svg and docs/benchmarks.md")


def main() -> int:
    data = json.loads((RESULTS / "instructions.json").read_text())
    profile_path = RESULTS / "instructions-profile.json"
    profile = json.loads(profile_path.read_text()) if profile_path.exists() else None
    write_docs(data, profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
