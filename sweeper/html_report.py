"""One self-contained HTML report of one or more studies: tables, interactive figures, failures
and the commands that reproduce them. No network: plotly.js is inlined once, no external CSS,
JS or fonts. Every user-supplied text is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.plots.configs import Config
    from sweeper.report import DomainTable, GridTable
    from sweeper.store import Store, StudyInfo

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
background:#f6f7f9;color:#1d2433;line-height:1.45}
main{max-width:1280px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.7rem;margin:.4em 0}h2{font-size:1.35rem;margin:1.8em 0 .4em;padding-top:.6em;
border-top:3px solid #3b5bdb}h3{font-size:1.05rem;margin:1.4em 0 .4em;color:#364fc7}
section.study{background:#fff;border-radius:10px;padding:8px 24px 24px;margin:24px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
.meta{color:#495057;font-size:.92rem}.meta b{color:#1d2433}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.86rem;background:#fff}
th,td{border:1px solid #dee2e6;padding:3px 9px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#f1f3f5;font-weight:600}td.label,th.label{text-align:left}
td.best{background:#d3f9d8;font-weight:700;outline:2px solid #2b8a3e}
td.missing{color:#adb5bd}caption{text-align:left;font-weight:600;padding:4px 0;color:#343a40}
.tables{display:flex;flex-wrap:wrap;gap:18px}.tables table{margin:0}
pre{background:#212529;color:#f8f9fa;padding:10px 14px;border-radius:6px;overflow-x:auto;
font-size:.85rem}
.figure{margin:.6em 0;border:1px solid #e9ecef;border-radius:8px;padding:4px;background:#fff}
.grid-figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
.error{color:#c92a2a;text-align:left;white-space:pre-wrap;font-family:monospace;font-size:.8rem}
nav a{margin-right:14px;color:#364fc7}
"""

#: the curve drawn for the best configurations (when the trials have it; else the first one).
_CURVE_PREFERENCE = ("validation", "val_loss", "train_loss")


class _Figures:
    """Renders plotly figures to HTML divs, inlining plotly.js into the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def div(self, fig: Any, css_class: str = "figure") -> str:
        body = fig.to_html(
            full_html=False,
            include_plotlyjs=self.count == 0,
            div_id=f"fig{self.count}",
            config={"displaylogo": False, "responsive": True, "displayModeBar": False},
        )
        self.count += 1
        return f'<div class="{css_class}">{body}</div>'


def render_report(store: Store, names: list[str]) -> str:
    """The HTML report of the studies `names`, in that order, as one self-contained page.

    Per study: description, settings and status counts, provenance when recorded, every table
    (grid tables with a hoverable heatmap per table; per-domain tables and bars for a study with
    ``method`` and ``target`` axes; the best configurations with 95% intervals), parallel
    coordinates, the best configurations' curves, a searched study's best-so-far history, the
    failed trials with their reasons, and the commands reproducing it.

    Raises:
        UnknownStudyError: a name is not a study of `store`.
        ValueError: `names` is empty.
    """
    if not names:
        raise ValueError("no studies to report")
    infos = [store.study(n) for n in names]  # fail before any work on a misspelt name
    figures = _Figures()
    sections = [_study_section(store, info, figures) for info in infos]
    e = html.escape
    nav = " ".join(f'<a href="#study-{e(i.name)}">{e(i.name)}</a>' for i in infos)
    title = "sweeper report: " + ", ".join(i.name for i in infos)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{e(title)}</h1><nav>{nav}</nav>{''.join(sections)}</main></body></html>\n"
    )


def _study_section(store: Store, info: StudyInfo, figures: _Figures) -> str:
    from sweeper.plots.study import is_per_domain, study_configs
    from sweeper.report import study_grid_tables

    e = html.escape
    study = info.study
    frame = store.frame(info.id, metrics=False, bookkeeping=True)
    frame[study.metric] = frame["value"]
    configs = study_configs(store, info, frame)
    parts = [
        f'<section class="study" id="study-{e(study.name)}"><h2>{e(study.name)}</h2>',
        f"<p>{e(study.description)}</p>",
        '<p class="meta">'
        + " · ".join(
            f"<b>{e(k)}</b> {e(str(v))}"
            for k, v in (
                ("task", study.task),
                ("kind", study.kind),
                ("metric", f"{study.metric} ({study.direction})"),
                ("seeds", ", ".join(map(str, study.seeds))),
                ("source", study.source or "(unknown)"),
            )
        )
        + "</p>",
        _counts_table(store.counts(info.id)),
        _provenance(info),
    ]
    if is_per_domain(study):
        from sweeper.plots.study import domain_tables_of

        tables = domain_tables_of(study, frame)
        parts.append("<h3>Per-domain tables</h3>")
        parts += [_domain_table(t) for t in tables]
        parts.append(figures.div(_domain_figure(tables)))
    elif study.axes or study.search:
        grids = study_grid_tables(frame, study)
        parts.append(f"<h3>Grid tables: {e(study.metric)}, mean over seeds</h3>")
        parts.append('<div class="tables">' + "".join(_grid_table(t) for t in grids) + "</div>")
        parts.append('<div class="grid-figures">')
        parts += [figures.div(_heatmap_figure(t, study.direction), "figure heatmap") for t in grids]
        parts.append("</div>")
    parts.append("<h3>Best configurations</h3>")
    parts.append(_best_table(configs[:10], study.metric))
    if len(configs) >= 2 and len(configs[0].params) >= 1:
        parts.append("<h3>Parallel coordinates</h3>")
        parts.append(figures.div(_parallel_figure(configs, study.metric, study.direction)))
    curve_fig = _curves_figure(store, configs[:5])
    if curve_fig is not None:
        parts.append("<h3>Curves of the best configurations (seed mean, 95% band)</h3>")
        parts.append(figures.div(curve_fig))
    if study.searched:
        from sweeper.plots.study import search_means

        parts.append("<h3>Search history</h3>")
        parts.append(figures.div(_history_figure(search_means(store, info), study.direction)))
    parts.append(_failures(frame))
    parts.append(_commands(info, store))
    parts.append("</section>")
    return "".join(parts)


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


def _counts_table(counts: dict[str, int]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(k)}</th>" for k in counts)
    row = "".join(f"<td>{v}</td>" for v in counts.values())
    caption = "<caption>Trials by state</caption>"
    return f'<table class="counts">{caption}<tr>{head}</tr><tr>{row}</tr></table>'


def _provenance(info: StudyInfo) -> str:
    fields = ("sweeper_version", "python_version", "torch_version", "git_commit", "code_hash")
    found = [(f, getattr(info, f, None)) for f in fields]
    found = [(f, v) for f, v in found if v is not None]
    if not found:
        return ""
    e = html.escape
    rows = "".join(
        f'<tr><th class="label">{e(f)}</th><td class="label">{e(str(v))}</td></tr>'
        for f, v in found
    )
    return f'<table class="provenance"><caption>Provenance</caption>{rows}</table>'


def _grid_table(table: GridTable) -> str:
    from sweeper.plots.configs import label
    from sweeper.plots.grid import group_title

    e = html.escape
    head = f'<th class="label">{e(table.row_axis)} \\ {e(table.col_axis or "")}</th>'
    head += "".join(f"<th>{e(label(c))}</th>" for c in table.cols)
    rows = []
    for i, r in enumerate(table.rows):
        cells = []
        for j, v in enumerate(table.values[i]):
            n = table.counts[i][j]
            text = _fmt(v)
            if table.expected and n != table.expected:
                text += f" <small>({n}/{table.expected})</small>"
            css = "best" if table.best == (i, j) else ("missing" if v is None else "")
            cells.append(f'<td class="{css}">{text}</td>')
        rows.append(f'<tr><th class="label">{e(label(r))}</th>{"".join(cells)}</tr>')
    cap = e(group_title(table.group))
    return f'<table class="grid"><caption>{cap}</caption><tr>{head}</tr>{"".join(rows)}</table>'


def _domain_table(table: DomainTable) -> str:
    from sweeper.plots.configs import label
    from sweeper.plots.grid import group_title
    from sweeper.report import DOMAIN_AVERAGE

    e = html.escape
    cols = [label(d) for d in table.domains] + [DOMAIN_AVERAGE]
    head = f'<th class="label">{e(table.row_axis)}</th>' + "".join(f"<th>{e(c)}</th>" for c in cols)
    rows = []
    for i, r in enumerate(table.rows):
        values = [*table.means[i], table.avg[i]]
        sems = [*table.sems[i], table.avg_sem[i]]
        cells = "".join(
            f'<td class="{"best" if table.best[j] == i else ""}">{_fmt(v)}'
            + (f" <small>± {_fmt(s)}</small>" if s is not None else "")
            + "</td>"
            for j, (v, s) in enumerate(zip(values, sems, strict=True))
        )
        rows.append(f'<tr><th class="label">{e(label(r))}</th>{cells}</tr>')
    cap = (
        f"{e(table.metric)} ({e(table.direction)}) on the held-out {e(table.col_axis)}, mean ± sem"
    )
    if table.group:
        cap += f" — {e(group_title(table.group))}"
    return f'<table class="domain"><caption>{cap}</caption><tr>{head}</tr>{"".join(rows)}</table>'


def _best_table(configs: Sequence[Config], metric: str) -> str:
    from sweeper.plots._interval import interval
    from sweeper.plots.configs import label

    if not configs:
        return "<p>No completed configuration yet.</p>"
    e = html.escape
    names = list(configs[0].params)
    head = "".join(f'<th class="label">{e(n)}</th>' for n in names)
    head += f"<th>{e(metric)} mean</th><th>95% interval</th><th>n</th>"
    rows = []
    for k, c in enumerate(configs):
        iv = interval(c.values)
        cells = "".join(f'<td class="label">{e(label(c.params[n]))}</td>' for n in names)
        ci = f"{_fmt(iv.low)} … {_fmt(iv.high)}" if iv.n >= 2 else "–"
        css = ' class="best"' if k == 0 else ""
        rows.append(f"<tr>{cells}<td{css}>{_fmt(c.mean)}</td><td>{ci}</td><td>{iv.n}</td></tr>")
    return f'<table class="best-configs"><tr>{head}</tr>{"".join(rows)}</table>'


def _failures(frame: pd.DataFrame) -> str:
    e = html.escape
    if "state" not in frame.columns:
        return ""
    failed = frame[frame["state"] == "failed"]
    if not len(failed):
        return "<h3>Failed trials</h3><p>None.</p>"
    rows = "".join(
        f"<tr><td>{int(r.id)}</td><td>{int(r.seed)}</td>"
        f'<td class="error">{e(str(r.error or ""))}</td></tr>'
        for r in failed.head(50).itertuples()
    )
    more = f"<p>… and {len(failed) - 50} more.</p>" if len(failed) > 50 else ""
    return (
        f"<h3>Failed trials ({len(failed)})</h3><table><tr><th>id</th><th>seed</th>"
        f'<th class="label">reason</th></tr>{rows}</table>{more}'
    )


def _commands(info: StudyInfo, store: Store) -> str:
    import shlex

    from sweeper.store import safe_url

    study = info.study
    db = shlex.quote(safe_url(store.url))
    source = shlex.quote(study.source or f"studies/{study.name}.toml")
    name = shlex.quote(study.name)
    lines = [f"sweeper run {source} --db {db}", f"sweeper table {name} --db {db}"]
    if {"method", "target"} <= set(study.axes):
        lines.append(f"sweeper table {name} --db {db} --layout domains --sem")
    lines.append(f"sweeper best {name} --db {db}")
    return "<h3>Reproduce</h3><pre>" + html.escape("\n".join(lines)) + "</pre>"


def _heatmap_figure(table: GridTable, direction: str) -> Any:
    import plotly.graph_objects as go

    from sweeper.plots.configs import label
    from sweeper.plots.grid import group_title, table_array

    z = table_array(table)
    text = [[_fmt(None if math.isnan(v) else float(v)) for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=[[None if math.isnan(v) else float(v) for v in row] for row in z],
            x=[label(c) for c in table.cols],
            y=[label(r) for r in table.rows],
            text=text,
            texttemplate="%{text}",
            textfont={"size": 10},
            colorscale="Viridis",
            reversescale=direction == "minimize",
            hovertemplate=f"{table.row_axis}=%{{y}}<br>{table.col_axis}=%{{x}}<br>"
            f"{table.metric}=%{{z:.4g}}<extra></extra>",
            showscale=False,
        )
    )
    if table.best is not None:
        i, j = table.best
        fig.add_shape(
            type="rect",
            x0=j - 0.5,
            x1=j + 0.5,
            y0=i - 0.5,
            y1=i + 0.5,
            line={"color": "red", "width": 3},
        )
    fig.update_layout(
        title={"text": group_title(table.group), "font": {"size": 12}},
        height=300,
        margin={"l": 60, "r": 10, "t": 36, "b": 40},
        xaxis={"title": table.col_axis, "type": "category"},
        yaxis={"title": table.row_axis, "type": "category", "autorange": "reversed"},
    )
    return fig


def _domain_figure(tables: Sequence[DomainTable]) -> Any:
    import plotly.graph_objects as go

    from sweeper.plots._interval import t_factor
    from sweeper.plots.configs import label
    from sweeper.report import DOMAIN_AVERAGE

    table = tables[0]
    x = [label(d) for d in table.domains] + [DOMAIN_AVERAGE]
    fig = go.Figure()
    for i, method in enumerate(table.rows):
        means = [*table.means[i], table.avg[i]]
        sems = [*table.sems[i], table.avg_sem[i]]
        ns = [*table.counts[i], min(table.counts[i], default=0)]
        err = [None if s is None else t_factor(n) * s for s, n in zip(sems, ns, strict=True)]
        fig.add_bar(
            name=label(method),
            x=x,
            y=means,
            error_y={"type": "data", "array": err, "visible": True},
        )
    fig.update_layout(
        barmode="group",
        height=420,
        title=f"{table.metric}: seed mean with 95% interval",
        margin={"l": 60, "r": 10, "t": 40, "b": 40},
        yaxis={"title": table.metric},
    )
    return fig


def _parallel_figure(configs: Sequence[Config], metric: str, direction: str) -> Any:
    import numpy as np
    import plotly.graph_objects as go

    from sweeper.plots.configs import scale_of
    from sweeper.plots.parallel import axis_positions

    dims = []
    for name in configs[0].params:
        values = [c.params[name] for c in configs]
        pos, ticks, labels = axis_positions(values, scale_of(values))
        dims.append(
            {
                "label": name,
                "values": pos.tolist(),
                "tickvals": ticks,
                "ticktext": labels,
                "range": [0, 1],
            }
        )
    means = np.array([c.mean for c in configs])
    dims.append({"label": f"{metric} (seed mean)", "values": means.tolist()})
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": means.tolist(),
                "colorscale": "Viridis",
                "reversescale": direction == "minimize",
                "showscale": True,
            },
            dimensions=dims,
        )
    )
    fig.update_layout(height=440, margin={"l": 70, "r": 140, "t": 60, "b": 30})
    return fig


def _curves_figure(store: Store, configs: Sequence[Config]) -> Any:
    if not configs:
        return None
    import plotly.graph_objects as go

    from sweeper.plots.lines import config_label, seed_band

    data = store.curves([t for c in configs for t in c.ids])
    found = list(dict.fromkeys(n for c in data.values() for n in c))
    if not found:
        return None
    name = next((n for n in _CURVE_PREFERENCE if n in found), found[0])
    fig = go.Figure()
    keys = [k for k in configs[0].params if len({repr(c.params[k]) for c in configs}) > 1]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for c, colour in zip(configs, palette, strict=False):
        series = [data[t][name] for t in c.ids if name in data.get(t, {})]
        if not series:
            continue
        mean, low, high = seed_band(series)
        epochs = list(range(1, len(mean) + 1))
        text = config_label(c, keys or None)
        fig.add_scatter(
            x=epochs + epochs[::-1],
            y=[*high.tolist(), *low[::-1].tolist()],
            fill="toself",
            fillcolor=colour,
            opacity=0.18,
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
        )
        fig.add_scatter(x=epochs, y=mean.tolist(), name=text, line={"color": colour})
    fig.update_layout(
        height=420,
        xaxis={"title": "epoch"},
        yaxis={"title": name},
        margin={"l": 60, "r": 10, "t": 30, "b": 40},
    )
    return fig


def _history_figure(values: Sequence[float | None], direction: str) -> Any:
    import plotly.graph_objects as go

    from sweeper.plots.lines import best_so_far

    x = list(range(1, len(values) + 1))
    fig = go.Figure()
    fig.add_scatter(x=x, y=list(values), mode="markers", name="configuration (seed mean)")
    best = best_so_far(values, direction)
    fig.add_scatter(
        x=x,
        y=[None if math.isnan(b) else b for b in best],
        mode="lines",
        line={"shape": "hv", "width": 3},
        name="best so far",
    )
    fig.update_layout(
        height=380, xaxis={"title": "proposal number"}, margin={"l": 60, "r": 10, "t": 30, "b": 40}
    )
    return fig
