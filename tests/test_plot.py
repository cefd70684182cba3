"""Chart helpers of :mod:`stidi.plot`: sizes that fit the book's column, line-style legends."""

from __future__ import annotations

import altair as alt
import pandas as pd
import pytest

import stidi.plot as sp


def test_setup_enables_offline_renderer_and_theme():
    sp.setup()
    assert alt.renderers.active == "html"
    assert alt.theme.active == "stidi"
    html = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q")._repr_mimebundle_()["text/html"]
    assert "stidi-vega" in html and "window.vegaEmbed" in html


def test_chart_width_fits_the_column():
    c = sp.chart(pd.DataFrame({"x": [1]}))
    assert c.width + 70 + sp.ACTIONS_WIDTH <= sp.COLUMN_WIDTH
    with pytest.raises(ValueError, match="column"):
        sp.chart(width=sp.COLUMN_WIDTH)


def test_dash_legend_draws_strokes_with_their_dash():
    enc = sp.stroke_dash("curve:N", ["validation", "training"])
    d = enc.to_dict()
    assert d["legend"]["symbolType"] == "stroke" and d["legend"]["symbolStrokeWidth"] >= 1
    assert d["scale"]["range"][0] == [1, 0] and d["scale"]["range"][1] != [1, 0]
    with pytest.raises(ValueError, match="dash patterns"):
        sp.stroke_dash("c:N", list("abcdefgh"))


def test_learning_curve_chart_from_a_report():
    report = {"best_epoch": 2, "history": [
        {"epoch": 1, "val_accuracy": 0.5, "train_accuracy_running": 0.4},
        {"epoch": 2, "val_accuracy": 0.7, "train_accuracy_running": 0.6}]}
    df = sp.history_frame(report)
    assert len(df) == 4 and set(df.curve) == {"validation", "training (running)"}
    spec = sp.learning_curve_chart(report).to_dict()
    assert len(spec["layer"]) == 3       # lines, points and the kept-epoch rule
    assert all(not layer["mark"].get("point") for layer in spec["layer"] if "mark" in layer
               and isinstance(layer["mark"], dict)), "points on a dashed line hide the dash legend"
    with pytest.raises(ValueError, match="history"):
        sp.history_frame({"best_epoch": 1})
    with pytest.raises(ValueError, match="none of"):
        sp.history_frame([{"epoch": 1, "x": 1.0}])


def test_seed_summary_and_chart():
    df = pd.DataFrame({"tau2": [256, 256, 1024, 1024, 1024], "test_accuracy": [0.7, 0.8, 0.6, 0.7, 0.8]})
    s = sp.seed_summary(df, "tau2")
    assert s["mean"].tolist() == pytest.approx([0.75, 0.7])
    assert s["sd"].tolist() == pytest.approx([0.0707107, 0.1], rel=1e-5) and s["n"].tolist() == [2, 3]
    spec = sp.seed_chart(df, "tau2", highlight=1024).to_dict()
    assert len(spec["layer"]) == 4
    with pytest.raises(ValueError, match="highlight"):
        sp.seed_chart(df, "tau2", highlight=5)
    with pytest.raises(ValueError, match="no column"):
        sp.seed_summary(df, "gamma")


def test_stack_is_vertical():
    c = sp.chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q")
    assert "vconcat" in sp.stack(c, c, title="t").to_dict()
    with pytest.raises(ValueError):
        sp.stack()
