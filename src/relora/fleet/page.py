"""The fleet page: OUT/report/index.html, one self-contained file a person opens in a browser.

No server, no CDN, no external script: styles, the sort and filter script and every chart (inline
SVG) are in the file, so it works offline and can be mailed or attached to a change request.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from relora.core.method.record import RunRecord, read_events
from relora.io import atomic_write

PAGE_DIR, PAGE_FILE = "report", "index.html"

# state key -> (badge text, colour); "ready-0" is a ready service that published without a training step
BADGES = {
    "ready-0": ("ready at zero steps", "#1a7f37"),
    "ready": ("ready", "#2da44e"),
    "below-threshold": ("below gate, old adapter kept", "#bf8700"),
    "failed": ("failed", "#cf222e"),
    "running": ("running", "#0969da"),
    "pending": ("pending", "#6e7781"),
}

# (column key, heading, how a value prints); the row dict carries these keys (see service_row)
COLUMNS = (
    ("name", "service", str), ("badge", "state", str), ("old", "old quality", ".3f"), ("new", "new quality", ".3f"),
    ("gate", "gate", ".3f"), ("delta", "Δ vs old", "+.3f"), ("flips", "negative flips", ".3f"),
    ("retention", "retention", ".2f"), ("ttr", "time to ready (s)", ".1f"), ("steps", "steps", "d"),
    ("probes", "probes", "d"), ("method", "method", str),
    # the gate's decision (relora.core.math.gate): the verdict, the last look's lower bound on new - old, at alpha,
    # against -margin, and the gate examples it cost (old service + every look)
    ("verdict", "gate verdict", str), ("lower", "lower bound", "+.3f"), ("alpha", "α", ".3g"),
    ("margin", "margin", ".3f"), ("examples", "gate examples", "d"),
)


def state_key(row: dict[str, Any]) -> str:
    if row["state"] == "ready" and row.get("steps") == 0:
        return "ready-0"
    return row["state"] if row["state"] in BADGES else "pending"


def service_row(row: dict[str, Any]) -> dict[str, Any]:
    """One ledger row as the page's table shows it (numbers stay numbers, for sorting)."""
    old, new = row.get("old_service_val_accuracy"), row.get("val_accuracy")
    return {"name": row["name"], "badge": state_key(row), "old": old, "new": new, "gate": row.get("threshold"),
            "delta": new - old if new is not None and old is not None else None,
            "flips": row.get("negative_flip_rate"), "retention": row.get("retention"),
            "ttr": row.get("time_to_ready_s"), "steps": row.get("steps"), "probes": row.get("probes"),
            "method": row.get("method") or "-", "error": row.get("error"),
            "verdict": row.get("gate_verdict") or "-", "lower": row.get("gate_lower"), "alpha": row.get("gate_alpha"),
            "margin": row.get("gate_margin"), "examples": row.get("gate_examples_scored")}


def _cell(value: Any, fmt: Any) -> str:
    if value is None:
        return "-"
    return html.escape(value if fmt is str else format(value, fmt))


def _badge(key: str) -> str:
    text, colour = BADGES[key]
    return f'<span class="badge" data-state="{key}" style="background:{colour}">{html.escape(text)}</span>'


def curve_svg(points: list[tuple[float, float]], old: float | None, gate: float | None, width: int = 260,
              height: int = 120) -> str:
    """Accuracy against seconds since the re-adaptation began, with the old quality and the gate as lines."""
    pad = 24
    levels = [y for _, y in points] + [v for v in (old, gate) if v is not None]
    lo, hi = max(0.0, min(levels, default=0.0) - 0.05), min(1.0, max(levels, default=1.0) + 0.05)
    t_max = max((t for t, _ in points), default=1.0) or 1.0

    def xy(t: float, y: float) -> tuple[float, float]:
        return pad + (width - 2 * pad) * t / t_max, height - pad - (height - 2 * pad) * (y - lo) / ((hi - lo) or 1)

    parts = [f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="#f6f8fa"/>']
    for level, colour, label in ((old, "#8250df", "old"), (gate, "#bf8700", "gate")):
        if level is not None:
            _, y = xy(0, level)
            parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
                         f'stroke-dasharray="4 3"/><text x="{width - pad + 2}" y="{y + 3:.1f}" font-size="9" '
                         f'fill="{colour}">{label}</text>')
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, a) for t, a in points))
        parts.append(f'<polyline points="{path}" fill="none" stroke="#0969da" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#0969da"/>' for x, y in (xy(t, a) for t, a in points)]
    parts.append(f'<text x="{pad}" y="{height - 6}" font-size="9">0 s</text>'
                 f'<text x="{width - pad}" y="{height - 6}" font-size="9" text-anchor="end">{t_max:.0f} s</text>'
                 f'<text x="2" y="{pad + 3}" font-size="9">{hi:.2f}</text>'
                 f'<text x="2" y="{height - pad}" font-size="9">{lo:.2f}</text></svg>')
    return "".join(parts)


def service_curve(run_dir: Path, record: RunRecord | None) -> list[tuple[float, float]]:
    """(seconds since the run began, gate-set accuracy) at each readiness check; an event's wall_s already
    counts the search's recorded cost, as time to ready does."""
    if record is None or not (run_dir / "events.jsonl").is_file():
        return []
    return [(e.wall_s, e.val_accuracy) for e in read_events(run_dir)]


SCRIPT = """
const table = document.getElementById('services'), body = table.tBodies[0];
function sortBy(key, descending) {
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = a.dataset[key], y = b.dataset[key];
    const nx = parseFloat(x), ny = parseFloat(y);
    const c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
    return descending ? -c : c;
  });
  rows.forEach(r => body.appendChild(r));
  table.dataset.sorted = key + (descending ? '-desc' : '-asc');
}
function filterState(state) {
  Array.from(body.rows).forEach(r => { r.hidden = !!state && r.dataset.badge !== state; });
  document.querySelectorAll('.chart').forEach(c => { c.hidden = !!state && c.dataset.badge !== state; });
}
table.querySelectorAll('th').forEach(th => th.addEventListener('click', () => {
  sortBy(th.dataset.key, table.dataset.sorted === th.dataset.key + '-asc');
}));
document.getElementById('state-filter').addEventListener('change', e => filterState(e.target.value));
// #sort=<column>[-desc]&state=<state>: a link can open the page sorted and filtered
const params = new URLSearchParams(location.hash.slice(1));
if (params.get('sort')) { const [k, d] = params.get('sort').split('-'); sortBy(k, d === 'desc'); }
if (params.get('state')) { document.getElementById('state-filter').value = params.get('state'); filterState(params.get('state')); }
"""

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.meta{color:#59636e}.totals span{margin-right:14px}
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #d1d9e0;text-align:right}
th{cursor:pointer;background:#f6f8fa;position:sticky;top:0}th:hover{background:#eaeef2}
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2),td:last-child,th:last-child{text-align:left}
.badge{color:#fff;border-radius:10px;padding:1px 8px;font-size:12px;white-space:nowrap}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #d1d9e0;border-radius:6px;padding:6px}
.chart h3{font-size:13px;margin:0 0 4px}footer{margin-top:24px;color:#59636e;font-size:12px}
"""


def render_page(rows: list[dict[str, Any]], records: dict[str, RunRecord], out: Path, info: dict[str, Any],
                provenance: str) -> str:
    services = [service_row(r) for r in rows]
    counts: dict[str, int] = {}
    for s in services:
        counts[s["badge"]] = counts.get(s["badge"], 0) + 1
    first = next(iter(records.values()), None)
    update = f"{_base(first, 'old_base')} → {_base(first, 'new_base')}" if first else "-"
    scratch = info.get("scratch_estimate_hours")
    compute = f"{info['compute_hours']:.3f} h of search and training" + (
        f" against a Scratch estimate of {scratch:.3f} h" if scratch is not None else "")
    head = "".join(f'<th data-key="{k}">{html.escape(h)}</th>' for k, h, _ in COLUMNS)
    body = "".join(_table_row(s) for s in services)
    charts = "".join(
        f'<div class="chart" data-badge="{s["badge"]}"><h3>{html.escape(s["name"])} {_badge(s["badge"])}</h3>'
        f'{curve_svg(service_curve(out / "runs" / s["name"], records.get(s["name"])), s["old"], s["gate"])}</div>'
        for s in services)
    options = "".join(f'<option value="{k}">{html.escape(t)}</option>' for k, (t, _) in BADGES.items())
    totals = "".join(f"<span>{_badge(k)} {counts[k]}</span>" for k in BADGES if k in counts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>relora fleet: {html.escape(out.name)}</title>
<style>{STYLE}</style></head><body>
<h1>relora fleet: {html.escape(out.name)}</h1>
<p class="meta">Update: {update}<br>Page written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; readiness, gates and flips
judged on {html.escape(info['judged_on'])}.</p>
<p class="totals">{totals}</p>
<p>Compute: {compute}. Time to ready: median {_cell(info['time_to_ready_s']['median'], '.1f')} s, max
{_cell(info['time_to_ready_s']['max'], '.1f')} s. A service below its gate keeps its old adapter (PortLLM).</p>
<h2>Services</h2>
<p><label>State: <select id="state-filter"><option value="">all</option>{options}</select></label>
Click a column heading to sort.</p>
<table id="services"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Accuracy against time</h2>
<p class="meta">Gate-set accuracy at each readiness check, from the start of the re-adaptation (search included);
dashed: the old service's quality and the gate.</p>
<div class="charts">{charts}</div>
<footer>{html.escape(provenance)}</footer>
<script>{SCRIPT}</script>
</body></html>
"""


def _base(record: RunRecord, key: str) -> str:
    """A base as its directory name and content hash (sha256 prefix); the full path on hover."""
    path = record.config.get(key) or "-"
    return (f'<span title="{html.escape(path)}">{html.escape(Path(path).name)}</span> '
            f'<code>{html.escape(record.hashes.get(key, "-")[:12])}</code>')


def _table_row(s: dict[str, Any]) -> str:
    data = " ".join(f'data-{k}="{html.escape(json.dumps(s[k]) if not isinstance(s[k], str) else s[k])}"'
                    for k, _, _ in COLUMNS)
    cells = "".join(f"<td>{_badge(s['badge']) if k == 'badge' else _cell(s[k], fmt)}</td>" for k, _, fmt in COLUMNS)
    title = f' title="{html.escape(s["error"])}"' if s.get("error") else ""
    return f'<tr class="service" {data}{title}>{cells}</tr>'


def write_fleet_page(rows: list[dict[str, Any]], records: dict[str, RunRecord], out: Path, info: dict[str, Any],
                     provenance: str) -> Path:
    page = out / PAGE_DIR / PAGE_FILE
    atomic_write(page, render_page(rows, records, out, info, provenance))
    return page
