"""``report.html``: the parameters, every table (suppressed cells marked) with its chart, the
segments and their breakdowns, in one self-contained page."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from identity_analytics.cohort_table import CohortTable
from identity_analytics.dataset import Dataset
from identity_analytics.report.config import ReportConfig


def _chart(table: CohortTable) -> str:
    """The table's plot as an embedded PNG data URL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(10, 4))
    table.plot(ax=ax)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
td.s{background:#eee;color:#888;text-align:center}
dl.params dt{font-weight:bold;float:left;clear:left;width:14em} dl.params dd{margin-left:15em}
img.chart{max-width:100%;border:1px solid #eee}
"""


def report_html(config: ReportConfig, dataset: Dataset, tables: dict[str, CohortTable], segments: list[dict[str, Any]],
          breakdowns: dict[str, CohortTable], audit: dict[str, Any]) -> str:  # fmt: skip
    esc = html.escape
    params = {
        "library version": audit["library_version"],
        "generated at": audit["generated_at"],
        "k": str(config.k),
        "reference date": dataset.reference_date.isoformat(),
        "inactive identities": "included" if config.include_inactive else "excluded",
        "inputs": ", ".join(f"{Path(i['path']).name} (sha256 {i['sha256'][:12]}…)" for i in audit["inputs"]),
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>identity-analytics report</title><style>{_STYLE}</style></head><body>",
        "<h1>identity-analytics report</h1>",
        "<dl class='params'>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in params.items()) + "</dl>",
        # the load's record counts are exact (a few quarantined records, or loaded minus the
        # counted total: the inactive ones): they stay in audit.json, the operator's record
        "<p>Records read, loaded, quarantined and duplicated are in <code>audit.json</code> "
        "(exact counts, for the operator, not for publication).</p>",
    ]
    for name, table in tables.items():
        parts += [
            f"<h2 id='cohort-{esc(name)}'>Cohort table {esc(name)}: {esc(' × '.join(table.by))}</h2>",
            f"<p>k = {table.k}; protection: {esc(table.protect)}; '·' marks a suppressed cell.</p>",
            table._repr_html_(),
            f"<img class='chart' alt='chart of {esc(name)}' src='{_chart(table)}'>",
        ]
    if segments:
        parts.append("<h2>Segments</h2><table><tr><th>segment</th><th>definition</th><th>size</th></tr>")
        for s in segments:
            size = "·" if s["suppressed"] else f"{s['size']:,}"
            parts.append(
                f"<tr><th>{esc(s['name'])}</th><td>{esc(json.dumps(s['where']))}</td>"
                f"<td class='{'s' if s['suppressed'] else ''}'>{size}</td></tr>"
            )
        parts.append("</table>")
        for key, table in breakdowns.items():
            parts += [f"<h2>Segment breakdown {esc(key)}</h2>", table._repr_html_()]
    # Lets a browser test (and a curious reader) see that every chart decoded: count them on load.
    parts.append(
        "<script>window.addEventListener('load',function(){var ok=0;for(var i of document.images)"
        "{if(i.complete&&i.naturalWidth>0)ok++}document.body.dataset.chartsRendered=ok;"
        "document.body.dataset.tables=document.querySelectorAll('table').length})</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


