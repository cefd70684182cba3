"""Charts for the book's chapters and for notebooks downloaded from it.

A chapter's first cell is::

    import stidi.plot

    stidi.plot.setup()

which makes Altair charts render without a network connection in the built
book (see :data:`VEGA_TEMPLATE`) and installs a theme whose default sizes fit
the book's content column (:data:`COLUMN_WIDTH` pixels at a 1280-pixel
window).  The helpers below build the chart types that several chapters
share:

* :func:`chart` -- ``alt.Chart`` with a width that fits the column;
* :func:`stack` -- panels one above the other (``vconcat``), never side by
  side, so a figure never overflows the column;
* :func:`dash_legend` / :func:`stroke_dash` -- a line-style legend that draws
  short line segments with their dash pattern, not dots;
* :func:`learning_curve_chart` -- accuracy per epoch from a training
  report's ``history`` (or a classifier's ``history_``);
* :func:`seed_chart` -- mean and standard deviation over seed repeats
  (a tidy frame such as :func:`stidi.results.over_seeds` returns), with the
  single runs as points.

Why the template: Altair's own HTML output fetches vega, vega-lite and
vega-embed from a CDN, so charts stay blank in an offline book.
:func:`enable_offline_altair` switches Altair's ``html`` renderer to
:data:`VEGA_TEMPLATE`.  In the built book the page already carries pinned
copies of the three libraries and the template calls that ``vegaEmbed``
directly; in a live notebook, where no such copy exists, it loads the
libraries the way Altair's default template does.  Altair is imported only by
this module, so ``import stidi`` does not need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import jinja2
import pandas as pd

__all__ = [
    "COLUMN_WIDTH",
    "ACTIONS_WIDTH",
    "CHART_WIDTH",
    "MAX_CHART_WIDTH",
    "CHART_HEIGHT",
    "DASHES",
    "VEGA_TEMPLATE",
    "enable_offline_altair",
    "setup",
    "chart",
    "stack",
    "dash_legend",
    "stroke_dash",
    "history_frame",
    "learning_curve_chart",
    "seed_summary",
    "seed_chart",
]

#: Width in pixels of the book's content column at a 1280-pixel window.
COLUMN_WIDTH = 688
#: Room that vega-embed keeps right of a chart for its "..." actions menu.
ACTIONS_WIDTH = 38
#: Default width of a chart's plotting area.  The y axis, its title and the
#: padding add about 70 pixels and the actions menu 38, so the whole chart
#: stays inside the column.
CHART_WIDTH = 540
#: Widest plotting area :func:`chart` accepts (leaves 60 px for a y axis).
MAX_CHART_WIDTH = COLUMN_WIDTH - ACTIONS_WIDTH - 60
#: Default height of a chart's plotting area.
CHART_HEIGHT = 220
#: Dash patterns (``[dash, gap]`` in pixels) for up to five line styles.
DASHES = ([1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [1, 4])

#: Jinja template for Altair's ``html`` renderer.  It receives Altair's
#: documented render variables: ``spec``, ``embed_options``, ``output_div``,
#: ``base_url`` and the vega, vega-lite and vega-embed versions.
VEGA_TEMPLATE = jinja2.Template(
    """\
<div id="{{ output_div }}" class="stidi-vega"></div>
<script type="text/javascript">
(function (spec, embedOpt) {
  var outputDiv = document.getElementById("{{ output_div }}");

  function showError(err) {
    outputDiv.innerHTML = '<div class="error" style="color:red;">' + err + "</div>";
    throw err;
  }

  function displayChart(vegaEmbed) {
    vegaEmbed(outputDiv, spec, embedOpt).catch(function (err) {
      showError("Javascript Error: " + err.message);
    });
  }

  // The built book loads pinned copies of vega, vega-lite and vega-embed.
  if (typeof window.vegaEmbed === "function") {
    displayChart(window.vegaEmbed);
    return;
  }

  // A live notebook: load the libraries as Altair's default template does.
  var paths = {
    "vega": "{{ base_url }}/vega@{{ vega_version }}?noext",
    "vega-lite": "{{ base_url }}/vega-lite@{{ vegalite_version }}?noext",
    "vega-embed": "{{ base_url }}/vega-embed@{{ vegaembed_version }}?noext"
  };
  if (typeof define === "function" && define.amd) {
    requirejs.config({paths: paths});
    require(["vega-embed"], displayChart, function (err) {
      showError("Error loading script: " + err.message);
    });
    return;
  }
  function loadScript(lib) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.async = true;
      s.onload = resolve;
      s.onerror = function () { reject("Error loading script: " + paths[lib]); };
      s.src = paths[lib];
      document.head.appendChild(s);
    });
  }
  loadScript("vega")
    .then(function () { return loadScript("vega-lite"); })
    .then(function () { return loadScript("vega-embed"); })
    .then(function () { displayChart(window.vegaEmbed); })
    .catch(showError);
})({{ spec }}, {{ embed_options }});
</script>
"""
)

_THEME = "stidi"


def _theme() -> dict:
    return {
        "config": {
            "view": {"continuousWidth": CHART_WIDTH, "continuousHeight": CHART_HEIGHT},
            # Legends below the plot: a legend on the right costs the width of
            # its longest label, which is what pushed figures out of the column.
            # Two columns of entries at most, so that a legend never gets wider
            # than the plot (one row of entries would).
            "legend": {"orient": "bottom", "columns": 2, "labelLimit": 270, "titleLimit": 400,
                       "columnPadding": 16},
            "title": {"limit": COLUMN_WIDTH - 40},
            "concat": {"spacing": 24},
        }
    }


def enable_offline_altair(embed_options: dict[str, Any] | None = None) -> None:
    """Render Altair charts with :data:`VEGA_TEMPLATE`.

    Pass chart-wide vega-embed options here rather than through
    ``alt.renderers.set_embed_options``, which re-enables the renderer with
    only the embed options and so drops the template.
    """
    options: dict[str, Any] = {"template": VEGA_TEMPLATE}
    if embed_options:
        options["embed_options"] = embed_options
    alt.renderers.enable("html", **options)


def setup(embed_options: dict[str, Any] | None = None, *, max_rows: bool = False) -> None:
    """Prepare a notebook kernel for the book's charts (call once, first).

    Enables the offline renderer and the ``stidi`` theme (column-fitting
    default sizes, legends at the bottom).  ``max_rows=False`` lifts Altair's
    5,000-row limit on inline data.
    """
    enable_offline_altair(embed_options)
    alt.theme.register(_THEME, enable=True)(_theme)
    if not max_rows:
        alt.data_transformers.disable_max_rows()


def chart(data: Any = None, *, width: int = CHART_WIDTH, height: int = CHART_HEIGHT,
          **properties) -> alt.Chart:
    """``alt.Chart(data)`` sized to fit the content column.

    Example::

        stidi.plot.chart(df, height=160).mark_line().encode(x="t:Q", y="v:Q")
    """
    if width > MAX_CHART_WIDTH:
        raise ValueError(f"width {width} px does not leave room for the axes in the "
                         f"{COLUMN_WIDTH}-px column (at most {MAX_CHART_WIDTH})")
    return alt.Chart(data if data is not None else alt.Undefined).properties(
        width=width, height=height, **properties)


def stack(*charts, title: str | None = None, spacing: int = 24, **properties) -> alt.VConcatChart:
    """Panels one above the other (``alt.vconcat``), legends kept independent.

    Use it instead of ``alt.hconcat``: two panels side by side rarely fit the
    688-px column.

    Example::

        stidi.plot.stack(top_panel, bottom_panel, title="Membrane potential and PSP")
    """
    if not charts:
        raise ValueError("stack() needs at least one chart")
    out = alt.vconcat(*charts, spacing=spacing, **properties)
    if title is not None:
        out = out.properties(title=title)
    return out


def dash_legend(title: str | None = None, **kwargs) -> alt.Legend:
    """A legend whose symbols are short line segments drawn with their dash.

    Vega-Lite's default legend symbol is a filled circle, which shows the
    colour but not the dash pattern; ``symbolType="stroke"`` draws the line.
    Draw the lines with ``mark_line()`` *without* ``point=True`` and put the
    points in a layer of their own: with the points in the same mark,
    Vega-Lite gives the legend symbols a fill and a transparent stroke, and a
    line-shaped symbol with no stroke is invisible.

    Example::

        alt.StrokeDash("curve:N", legend=stidi.plot.dash_legend("measured on"))
    """
    opts = dict(symbolType="stroke", symbolStrokeWidth=2, symbolSize=400, symbolStrokeColor="black",
                orient="bottom")
    opts.update(kwargs)
    if title is not None:
        opts["title"] = title
    return alt.Legend(**opts)


def stroke_dash(field: str, domain: Sequence[str], *, title: str | None = None,
                dashes: Sequence[Sequence[float]] = DASHES, **legend) -> alt.StrokeDash:
    """A ``strokeDash`` encoding with fixed patterns and a :func:`dash_legend`.

    ``domain`` lists the categories in order; the first gets a solid line.

    Example::

        .encode(strokeDash=stidi.plot.stroke_dash("measured on:N", ["validation", "training"]))
    """
    domain = list(domain)
    if len(domain) > len(dashes):
        raise ValueError(f"{len(domain)} categories but only {len(dashes)} dash patterns")
    return alt.StrokeDash(field, scale=alt.Scale(domain=domain, range=[list(d) for d in dashes[:len(domain)]]),
                          legend=dash_legend(title, **legend), sort=domain)


#: Labels of the history entries a learning curve shows by default.
CURVE_LABELS = {"val_accuracy": "validation", "train_accuracy_running": "training (running)"}


def history_frame(history: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                  metrics: Mapping[str, str] | Sequence[str] = CURVE_LABELS) -> pd.DataFrame:
    """Long-form ``epoch, curve, value`` rows from a training history.

    ``history`` is a report (a dict with a ``history`` list, as written by
    ``python -m stidi train`` and loaded by :func:`stidi.results.load_report`),
    the list itself, or a fitted classifier's ``history_``.  ``metrics`` maps
    history keys to curve labels; keys a record lacks are skipped.
    """
    if isinstance(history, Mapping):
        if "history" not in history:
            raise ValueError("a report needs a 'history' list")
        history = history["history"]
    if not isinstance(metrics, Mapping):
        metrics = {m: m for m in metrics}
    rows = []
    for rec in history:
        if "epoch" not in rec:
            raise ValueError("every history record needs an 'epoch'")
        for key, label in metrics.items():
            value = rec.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"epoch": int(rec["epoch"]), "curve": label, "value": float(value)})
    if not rows:
        raise ValueError(f"the history holds none of {list(metrics)}")
    return pd.DataFrame(rows)


def learning_curve_chart(history, metrics: Mapping[str, str] | Sequence[str] = CURVE_LABELS, *,
                         best_epoch: int | None = None, title: str | None = None,
                         width: int = CHART_WIDTH, height: int = 200,
                         percent: bool = True) -> alt.LayerChart:
    """Accuracy per epoch, one line style per curve, the kept epoch marked.

    Example::

        report = stidi.results.load_report("fc-mnist")
        stidi.plot.learning_curve_chart(report, best_epoch=report["best_epoch"])
    """
    df = history_frame(history, metrics)
    if best_epoch is None and isinstance(history, Mapping):
        best_epoch = history.get("best_epoch")
    labels = list(dict.fromkeys(df["curve"]))
    fmt = "%" if percent else ""
    x = alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1))
    y = alt.Y("value:Q", title="accuracy" if percent else "value",
              scale=alt.Scale(zero=False), axis=alt.Axis(format=fmt))
    base = chart(df, width=width, height=height)
    # lines and points in separate layers, so that the dash legend draws its strokes (see dash_legend)
    lines = base.mark_line(color="#1f77b4").encode(x=x, y=y, strokeDash=stroke_dash("curve:N", labels, title=None))
    points = base.mark_point(filled=True, size=30, color="#1f77b4").encode(
        x=x, y=y, tooltip=["epoch:Q", "curve:N", alt.Tooltip("value:Q", format=".2%" if percent else ".4g")])
    layers = [lines, points]
    if best_epoch is not None:
        layers.append(alt.Chart(pd.DataFrame({"epoch": [int(best_epoch)], "label": ["kept"]}))
                      .mark_rule(color="gray", strokeDash=[3, 3]).encode(x="epoch:Q",
                                                                         tooltip=["label:N", "epoch:Q"]))
    out = alt.layer(*layers)
    if title is not None:
        out = out.properties(title=title)
    return out


def seed_summary(df: pd.DataFrame, x: str, y: str = "test_accuracy",
                 by: Sequence[str] = ()) -> pd.DataFrame:
    """Mean, standard deviation (``ddof=1``, 0 for one seed) and count of ``y`` per ``x`` (and ``by``)."""
    for col in [x, y, *by]:
        if col not in df.columns:
            raise ValueError(f"no column {col!r} in the frame (columns: {list(df.columns)})")
    g = df.groupby([x, *by], sort=False)[y]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    out["sd"] = out["sd"].fillna(0.0)
    out["low"], out["high"] = out["mean"] - out["sd"], out["mean"] + out["sd"]
    return out


def seed_chart(df: pd.DataFrame, x: str, y: str = "test_accuracy", *, color: str | None = None,
               x_type: str = "O", title: str | None = None, width: int = CHART_WIDTH,
               height: int = 200, percent: bool = True, highlight=None) -> alt.LayerChart:
    """Mean ± one standard deviation over seeds (bars), each seed a dot.

    ``df`` has one row per run, e.g. from :func:`stidi.results.over_seeds`
    with a column ``x`` naming the setting.  ``highlight``: an ``x`` value
    (for example the default setting) whose mean is drawn as a ring.

    Example::

        runs = pd.concat([stidi.results.over_seeds(clf.set_params(tau2=t), train, validation=val,
                                                   test=test, seeds=[0, 1, 2], tau2=t)
                          for t in (256, 1024, 4096)])
        stidi.plot.seed_chart(runs, "tau2", highlight=1024)
    """
    by = [color] if color else []
    summary = seed_summary(df, x, y, by)
    fmt = "%" if percent else ""
    yenc = alt.Y("mean:Q", title=y.replace("_", " "), scale=alt.Scale(zero=False), axis=alt.Axis(format=fmt))
    col = alt.Color(f"{color}:N", legend=alt.Legend(orient="bottom")) if color else alt.value("#1f77b4")
    offset = {"xOffset": alt.XOffset(f"{color}:N")} if color and x_type in ("O", "N") else {}
    base = alt.Chart(summary).properties(width=width, height=height)
    bars = base.mark_errorbar(ticks=True).encode(
        x=alt.X(f"{x}:{x_type}"), y=alt.Y("low:Q", title=y.replace("_", " ")), y2="high:Q", color=col,
        **offset)
    means = base.mark_point(filled=True, size=60).encode(
        x=alt.X(f"{x}:{x_type}"), y=yenc, color=col, **offset,
        tooltip=[f"{x}:{x_type}", *([f"{color}:N"] if color else []),
                 alt.Tooltip("mean:Q", format=".2%" if percent else ".4g"),
                 alt.Tooltip("sd:Q", format=".2%" if percent else ".4g"), "n:Q"])
    singles = alt.Chart(df).mark_point(size=18, opacity=0.5).encode(
        x=alt.X(f"{x}:{x_type}"), y=alt.Y(f"{y}:Q"), color=col, **offset)
    layers = [bars, singles, means]
    if highlight is not None:
        ring = summary[summary[x] == highlight]
        if ring.empty:
            raise ValueError(f"highlight {highlight!r} is not a value of {x!r}")
        layers.append(alt.Chart(ring).mark_point(size=220, color="black", strokeWidth=1.5).encode(
            x=alt.X(f"{x}:{x_type}"), y="mean:Q", **offset))
    out = alt.layer(*layers)
    if title is not None:
        out = out.properties(title=title)
    return out
