"""Helpers for the book's executable chapters.

Every chapter starts with a hidden setup cell (tag ``remove-cell``: it runs,
but neither its code nor its empty output appears in the book)::

    import bookutils

    bookutils.setup()

Cell tags used by the chapters:

* ``remove-cell`` -- setup code with no output (the cell above);
* ``remove-input`` -- plumbing whose output is the point (a chart, a table);
* ``hide-input`` -- code a reader may want, collapsed behind a toggle;
* ``parameters`` -- the one cell of tunable sizes; ``tests/test_chapters.py``
  overrides them to run the chapter quickly, while the book build runs the
  defaults, so the defaults must give the book's figures in reasonable time.

Chapters live directly in ``book/``; Jupyter Book, papermill and a live
Jupyter session all run a chapter with ``book/`` as the working directory, so
this module imports without any path changes.

Why: Altair's own HTML output fetches vega, vega-lite and vega-embed from a
CDN, so charts stay blank in the offline book.  :func:`enable_offline_altair`
switches Altair's ``html`` renderer to :data:`VEGA_TEMPLATE`, passed through
the renderer's documented ``template`` option.  In the built book the page
already carries pinned copies of the three libraries (``html_js_files`` in
``_config.yml``, vendored by ``scripts/vendor_js.py``), and the template calls
that ``vegaEmbed`` directly.  In a live notebook, where no such copy exists,
it loads the libraries the way Altair's default template does.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import jinja2

__all__ = ["VEGA_TEMPLATE", "enable_offline_altair", "setup"]

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


def setup(embed_options: dict[str, Any] | None = None) -> None:
    """Prepare a chapter's kernel for the book (call once, in the first cell)."""
    enable_offline_altair(embed_options)
