"""``analyze --html FILE``: one self-contained page (no network, no scripts) with SVG charts.

matplotlib draws each chart to SVG text, inlined in the page: a CI chart per metric and,
for sequential experiments, the confidence sequence over the looks.
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagstone.analysis.render import headline, metric_rows, metric_title, warnings
from flagstone.analysis.run import Analysis

if TYPE_CHECKING:
    from flagstone.stats.engine import MetricResult

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;
color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem}
.sub{color:#59636e} table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{border-bottom:1px solid #d1d9e0;padding:.35rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f6f8fa}
.better,.not-harmed{color:#1a7f37;font-weight:600} .worse,.harmed{color:#cf222e;font-weight:600}
.notice{padding:.45rem .7rem;border-radius:6px;margin:.3rem 0}
.error{background:#ffebe9;border:1px solid #ff8182} .warning{background:#fff8c5;border:1px solid #d4a72c}
.info{background:#ddf4ff;border:1px solid #54aeff} svg{max-width:100%;height:auto}
.badge{font-size:.8rem;padding:.15rem .5rem;border-radius:1rem;vertical-align:middle} .good{background:#dafbe1;color:#1a7f37} .bad{background:#ffebe9;color:#cf222e}
footer{margin-top:2rem;color:#59636e;font-size:.85rem}
"""


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("svg")  # no display, no GUI toolkit
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text, small and searchable
    plt.rcParams["svg.hashsalt"] = "flagstone"  # the same report twice is the same bytes
    return plt


def ci_chart(m: MetricResult) -> str | None:
    """Each treatment arm's estimate and interval against 0 (no effect)."""
    rows = [c for c in m.comparisons if math.isfinite(c.estimate.value)]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.7 + 0.55 * len(rows)))
    scale = 100.0 if m.kind == "proportion" or rows[0].scale == "relative" else 1.0
    for i, c in enumerate(rows):
        e = c.estimate
        low = e.ci_low if math.isfinite(e.ci_low) else e.value - 4 * e.stderr
        high = e.ci_high if math.isfinite(e.ci_high) else e.value + 4 * e.stderr
        colour = {"better": "#1a7f37", "worse": "#cf222e", "harmed": "#cf222e"}.get(
            c.verdict, "#0969da"
        )
        ax.plot(
            [low * scale, high * scale], [i, i], color=colour, linewidth=3, solid_capstyle="butt"
        )
        ax.plot([e.value * scale], [i], "o", color=colour, markersize=7)
    ax.axvline(0, color="#59636e", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(rows)), [c.arm for c in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    unit = "%" if rows[0].scale == "relative" else ("pp" if m.kind == "proportion" else "")
    ax.set_xlabel(f"lift vs {rows[0].control}" + (f" ({unit})" if unit else ""))
    ax.grid(axis="x", color="#d1d9e0", linewidth=0.6)
    ax.spines[["top", "right", "left"]].set_visible(False)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def sequence_chart(m: MetricResult) -> str | None:
    """The running confidence sequence over the looks, per treatment arm."""
    series = [c for c in m.comparisons if c.sequential is not None and len(c.sequential.looks) > 1]
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    colours = ["#0969da", "#8250df", "#bf3989", "#1a7f37"]
    for i, c in enumerate(series):
        assert c.sequential is not None
        looks = c.sequential.looks
        xs = list(range(1, len(looks) + 1))
        low = [x.running_ci_low if math.isfinite(x.running_ci_low) else math.nan for x in looks]
        high = [x.running_ci_high if math.isfinite(x.running_ci_high) else math.nan for x in looks]
        colour = colours[i % len(colours)]
        ax.fill_between(xs, low, high, color=colour, alpha=0.18, linewidth=0)
        ax.plot(xs, [x.estimate for x in looks], color=colour, linewidth=1.6, label=c.arm)
    ax.axhline(0, color="#59636e", linewidth=1, linestyle="--")
    ax.set_xlabel("look")
    ax.set_ylabel("lift (running interval)")
    ax.legend(frameon=False)
    ax.grid(color="#d1d9e0", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def render_html(a: Analysis) -> str:
    esc = html.escape
    r = a.result
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{esc(a.key)} — flagstone analyze</title>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(a.key)} <span class='badge {'good' if a.ok else 'bad'}'>{'trustworthy' if a.ok else 'needs attention'}</span></h1>",
        f"<p class=sub>{esc(headline(a))}</p>",
    ]
    for severity, message in warnings(a):
        parts.append(f"<div class='notice {esc(severity)}'>{esc(message)}</div>")
    for m in r.metrics:
        parts.append(f"<h2>{esc(metric_title(m))}</h2>")
        parts.append(
            "<table><tr><th>arm</th><th>n</th><th>mean</th><th>lift [CI]</th><th>evidence</th>"
            "<th>verdict</th></tr>"
        )
        for row in metric_rows(m, r.method):
            verdict = row.verdict.split()[0]
            parts.append(
                f"<tr><td>{esc(row.arm)}</td><td>{row.n:,}</td><td>{esc(row.mean)}</td>"
                f"<td>{esc(row.lift)}</td><td>{esc(row.evidence)}</td>"
                f"<td class='{esc(verdict)}'>{esc(row.verdict)}</td></tr>"
            )
        parts.append("</table>")
        for chart in (ci_chart(m), sequence_chart(m)):
            if chart:
                parts.append(f"<figure>{chart}</figure>")
    parts.append(f"<footer>{esc(r.version)} · analysed {esc(a.at)} · flagstone</footer>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(path: Path, a: Analysis) -> None:
    from flagstone.edit import atomic_write

    atomic_write(path, render_html(a))
