"""The bench's page: report.md as one self-contained HTML file (OUT/report/index.html), its tables sortable
like the fleet page's and its plots inlined as data URIs, so it opens offline with nothing beside it."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from relora.io import atomic_write

IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1400px}
table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #d1d9e0;text-align:right}
th{background:#f6f8fa;cursor:pointer}td:first-child,th:first-child{text-align:left}img{max-width:100%}
"""
SCRIPT = """
document.querySelectorAll('table').forEach(t => t.querySelectorAll('th').forEach((th, i) =>
  th.addEventListener('click', () => {
    const rows = Array.from(t.tBodies[0].rows), down = t.dataset.sorted === String(i);
    rows.sort((a, b) => { const x = a.cells[i].textContent, y = b.cells[i].textContent;
      const c = (isNaN(parseFloat(x)) || isNaN(parseFloat(y))) ? x.localeCompare(y) : parseFloat(x) - parseFloat(y);
      return down ? -c : c; });
    rows.forEach(r => t.tBodies[0].appendChild(r)); t.dataset.sorted = down ? '' : String(i);
  })));
"""


def _cells(line: str) -> list[str]:
    return [html.escape(c.strip()) for c in line.strip().strip("|").split("|")]


def _image(folder: Path, alt: str, src: str) -> str:
    path = folder / src
    if not path.is_file():
        return f"<p>(missing plot {html.escape(src)})</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def markdown_page(markdown: str, folder: Path, title: str) -> str:
    """The report's headings, paragraphs, pipe tables and images as HTML (the subset report.md uses)."""
    parts, table = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            head, *rows = [r for r in table if not re.fullmatch(r"\|[\s|:-]+\|?", r.strip())]
            parts.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in _cells(head)) + "</tr></thead><tbody>"
                         + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in _cells(r)) + "</tr>" for r in rows)
                         + "</tbody></table>")
            table = []
        if match := IMAGE.match(line.strip()):
            parts.append(_image(folder, match["alt"], match["src"]))
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 4)
            parts.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}<script>{SCRIPT}</script></body></html>\n")


def write_bench_page(out: Path) -> Path:
    """OUT/report/index.html from OUT/report.md and the plots beside it."""
    page = out / "report" / "index.html"
    atomic_write(page, markdown_page((out / "report.md").read_text(), out, f"relora lab bench: {out.name}"))
    return page
