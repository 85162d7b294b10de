"""The fleet page in a real browser: headless Chromium (Debian's `chromium`) loads OUT/report/index.html
of a finished tiny rollout, dumps the DOM after its script ran, and takes a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import write_fleet
from relora.cli import main

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH: scripts/test.sh installs Debian's "
                                                           "chromium when it can (apt-get install chromium)")


class Rows(HTMLParser):
    """The services table's rows (their data- attributes), the badges and the charts, as the browser left them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.badges: list[str] = []
        self.charts = 0
        self.curves = 0
        self.hidden_rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "service" in a.get("class", ""):
            self.rows.append(a)
            self.hidden_rows += "hidden" in a
        elif tag == "span" and "badge" in a.get("class", ""):
            self.badges.append(a["data-state"])
        elif tag == "div" and a.get("class") == "chart":
            self.charts += 1
        elif tag == "polyline":
            self.curves += 1


def dom(page: Path, fragment: str = "") -> Rows:
    run = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"{page.as_uri()}{fragment}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    parsed = Rows()
    parsed.feed(run.stdout)
    return parsed


@pytest.fixture(scope="module")
def page(world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished rollout of four services: two re-adapted, one left on PortLLM below a gate it cannot
    clear untrained, one whose validation file is missing (failed)."""
    tmp = tmp_path_factory.mktemp("page")
    spec = yaml.safe_load(write_fleet(world, tmp, n=4, steps=8).read_text())
    spec["adapters"][2] |= {"threshold": 1.0, "method": "portllm"}
    spec["adapters"][3]["val"] = str(tmp / "missing.jsonl")
    (tmp / "fleet.yaml").write_text(yaml.safe_dump(spec))
    rolled = CliRunner().invoke(main, ["rollout", str(tmp / "fleet.yaml"), "--quiet"])
    assert rolled.exit_code == 1 and '"failed": 1' in rolled.output, rolled.output  # a failed service: exit 1
    reported = CliRunner().invoke(main, ["report", spec["out"]])
    assert reported.exit_code == 0, reported.output
    return Path(spec["out"]) / "report" / "index.html"


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # no CDN, no remote script or image
    assert "<script src" not in text


@needs_browser
def test_the_browser_shows_every_service_badge_and_chart(page: Path) -> None:
    shown = dom(page)
    assert [r["data-name"] for r in shown.rows] == ["svc0", "svc1", "svc2", "svc3"]
    states = {r["data-name"]: r["data-badge"] for r in shown.rows}
    assert states["svc2"] == "below-threshold" and states["svc3"] == "failed"
    assert states["svc0"] in ("ready", "ready-0") and states["svc1"] in ("ready", "ready-0")
    assert shown.charts == 4 and shown.curves == 3  # a chart per service; the failed one has no curve
    assert set(states.values()) <= set(shown.badges)  # each row's state drawn as a badge


@needs_browser
def test_sorting_by_a_column_reorders_the_rows_in_the_browser(page: Path) -> None:
    """The page's own script sorts: opened with #sort=<column>-desc it runs the same sort a click runs."""
    by_name = dom(page, "#sort=name-desc")
    assert [r["data-name"] for r in by_name.rows] == ["svc3", "svc2", "svc1", "svc0"]
    by_gate = dom(page, "#sort=gate-desc")
    assert by_gate.rows[0]["data-name"] == "svc2"  # the 1.0 gate sorts first
    filtered = dom(page, "#state=below-threshold")
    assert filtered.hidden_rows == 3


@needs_browser
def test_the_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "page.png"
    run = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1300,900", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    image = Image.open(shot).convert("L")
    colours = image.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 20  # text, badges and charts, not one flat colour
    low, high = image.getextrema()
    assert high - low > 100


def test_status_watch_stops_when_nothing_is_pending_or_running(page: Path) -> None:
    out = page.parent.parent
    watched = CliRunner().invoke(main, ["status", str(out), "--watch", "--interval", "0.1"])
    assert watched.exit_code == 0, watched.output
    assert watched.output.count("| svc0 ") == 1 and "ready" in watched.output.splitlines()[0]


def test_the_bench_page_inlines_its_tables_and_plots(tmp_path: Path) -> None:
    """relora lab bench's report.md and plots become one offline page, whose rows and plot the browser shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relora.lab.report.page import write_bench_page

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "curve.png")
    plt.close(fig)
    (tmp_path / "report.md").write_text("# bench\n\nSome text.\n\n| method | time (s) |\n|---|---|\n| a | 9.0 |\n"
                                        "| b | 10.0 |\n| c | 2.5 |\n\n![curve](curve.png)\n")
    page = write_bench_page(tmp_path)
    text = page.read_text()
    assert "data:image/png;base64," in text and "curve.png" not in text.replace('alt="curve"', "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    if BROWSER is None:
        pytest.skip("no chromium on PATH")
    run = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    cells = re.findall(r"<tr><td>(\w)</td>", run.stdout)
    assert cells == ["a", "b", "c"] and "<img" in run.stdout
