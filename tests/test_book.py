"""The book builds strictly and every page renders offline in a real browser.

One strict build (``jupyter-book build -W -n --keep-going``, every chapter
executed) per test session, into a temporary folder.  Each page listed in
``_toc.yml`` is then opened in headless Chromium (Debian's ``/usr/bin/chromium``
driven by Playwright) from a web server on 127.0.0.1, and must:

* make no request to any other host (such requests are blocked and reported),
* log no console error and raise no JavaScript error,
* draw every Altair chart (an ``svg`` or ``canvas`` in each chart container),
* render every saved widget view into controls,
* typeset every math node with MathJax, leaving no raw TeX in the text,
* keep every chart, table, printed output and equation inside the 688-pixel
  content column (no horizontal scrolling), and draw every legend symbol;

and one Altair slider (chapter 3's weight slider) is moved to check that the
chart redraws offline.  Tests that need no build check the sources: every
labelled equation is followed by a ``Code:`` line naming the package objects
that compute it.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.book

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Pages Sphinx writes on its own; they are not part of the book's content.
GENERATED_PAGES = {"genindex.html", "search.html", "index.html"}
BUILD_TIMEOUT_S = 1800
RENDER_TIMEOUT_MS = 20_000
# The width at which the content column is 688 px wide.
VIEWPORT = {"width": 1280, "height": 900}


def toc_pages() -> list[str]:
    """HTML pages of the documents listed in ``_toc.yml``, root first."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    return [f"{docname}.html" for docname in parse_toc_yaml(REPO / "_toc.yml")]


# --------------------------------------------------------------------- sources

#: An equation label: ``$$ ... $$ (eq-name)``, ``(eq-name)=`` or ``:label: eq-name``.
EQ_LABEL = re.compile(r"^(?:\$\$\s*\((eq-[\w-]+)\)\s*$|\((eq-[\w-]+)\)=\s*$|:label:\s*(eq-[\w-]+)\s*$)")
#: A package object named in a ``Code:`` paragraph.
CODE_NAME = re.compile(r"`(stidi(?:\.\w+)+)`")
#: How many lines after its label an equation's ``Code:`` line may start.
CODE_WITHIN = 6
#: Chapters whose "Code:" lines are written together with their other content (the test
#: holds for them once both halves of the book are merged).
SHARED_CHAPTERS = {"04_stidi_bp_rule", "05_deep_fc", "06_conv", "08_reproduction"}


def resolve(dotted: str):
    """Import the longest importable module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def equation_code_lines(path: Path) -> list[tuple[str, int, str | None]]:
    """(label, line number, text of its Code: paragraph or None) for every labelled equation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        m = EQ_LABEL.match(line.strip())
        if not m:
            continue
        label = next(g for g in m.groups() if g)
        code = None
        for j in range(i + 1, min(i + 1 + CODE_WITHIN, len(lines))):
            if EQ_LABEL.match(lines[j].strip()) or lines[j].startswith("#"):
                break
            if lines[j].startswith("Code:"):
                para = [lines[j]]
                for k in range(j + 1, len(lines)):
                    if not lines[k].strip():
                        break
                    para.append(lines[k])
                code = " ".join(para)
                break
        found.append((label, i + 1, code))
    return found


def book_chapters() -> list[Path]:
    return sorted((REPO / "book").glob("*.md"))


@pytest.mark.parametrize("path", book_chapters(), ids=lambda p: p.stem)
def test_every_equation_names_its_code(path):
    """Each labelled equation has a ``Code:`` line right below it naming importable package objects."""
    problems = []
    for label, line, code in equation_code_lines(path):
        if code is None:
            problems.append(f"{label} (line {line}): no 'Code:' line within {CODE_WITHIN} lines")
            continue
        names = CODE_NAME.findall(code)
        if not names:
            problems.append(f"{label} (line {line}): the Code: line names no `stidi....` object")
        for name in names:
            try:
                resolve(name)
            except (ImportError, AttributeError) as err:
                problems.append(f"{label} (line {line}): `{name}` does not resolve ({err!r})")
    if problems and path.stem in SHARED_CHAPTERS and not any(
            code for _, _, code in equation_code_lines(path)):
        pytest.xfail(f"{path.name}: Code: lines not written yet in this half of the book")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def test_code_line_checker_catches_problems(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("$$\nx\n$$ (eq-a)\n\nCode: `stidi.neuron.psp`.\n\n(eq-b)=\n$$y$$\n\ntext\n\n"
                    "$$\nz\n$$ (eq-c)\n\nCode: a derivation;\nsee `stidi.neuron.no_such_thing`.\n")
    found = {label: code for label, _, code in equation_code_lines(page)}
    assert found["eq-a"] == "Code: `stidi.neuron.psp`." and found["eq-b"] is None
    assert CODE_NAME.findall(found["eq-c"]) == ["stidi.neuron.no_such_thing"]
    with pytest.raises(AttributeError):
        resolve("stidi.neuron.no_such_thing")
    assert resolve("stidi.conv.ConvSpikingClassifier.coefs_") is not None


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book is not installed (make install)")
    return found


@pytest.fixture(scope="session")
def book_build(tmp_path_factory):
    """Build the book once, strictly, into a temporary folder."""
    out = tmp_path_factory.mktemp("book")
    cmd = [_jupyter_book(), "build", "-W", "-n", "--keep-going", "--path-output", str(out), "."]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    elapsed = time.perf_counter() - start
    log = out / "build.log"
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return {
        "returncode": proc.returncode,
        "html": out / "_build" / "html",
        "log": log,
        "tail": (proc.stdout + proc.stderr)[-6000:],
        "seconds": elapsed,
    }


@pytest.fixture(scope="session")
def built_html(book_build) -> Path:
    if book_build["returncode"] != 0:
        pytest.fail(f"the book did not build (see test_book_builds_strictly); log: {book_build['log']}")
    return book_build["html"]


def test_book_builds_strictly(book_build):
    print(f"book build: {book_build['seconds']:.1f} s")
    assert book_build["returncode"] == 0, (
        f"jupyter-book build -W -n --keep-going failed; full log: {book_build['log']}\n"
        + book_build["tail"]
    )


def test_every_built_page_is_checked(built_html):
    """Each content page in the build is one the browser check opens."""
    built = {
        p.relative_to(built_html).as_posix()
        for p in built_html.rglob("*.html")
        if not p.relative_to(built_html).parts[0].startswith("_")
    }
    content = built - GENERATED_PAGES
    assert content == set(toc_pages())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass


@pytest.fixture(scope="session")
def book_server(built_html):
    """Serve the built book on 127.0.0.1 from a background thread."""
    handler = functools.partial(_QuietHandler, directory=str(built_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        # Debian's Chromium: Playwright never downloads a browser here.
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


# Run in the page once it has settled: what rendered and what did not.
INSPECT_PAGE = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const report = {};

  const charts = [...document.querySelectorAll('[id^="altair-viz-"], .vega-embed')];
  report.blankCharts = charts
    .filter(el => !el.querySelector('svg, canvas'))
    .map(el => (el.id || el.className) + ': ' + el.textContent.trim().slice(0, 200));

  const views = [...document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]')];
  report.widgetViews = views.length;
  report.unrenderedWidgets = views
    .filter(s => !s.parentElement.querySelector('.jupyter-widgets'))
    .map(s => s.textContent.trim().slice(0, 200));
  report.widgetControls = document.querySelectorAll(
    '.jupyter-widgets.widget-slider, .jupyter-widgets input, .jupyter-widgets button, ' +
    '.jupyter-widgets select, .jupyter-widgets .widget-readout, .jupyter-widgets.widget-output'
  ).length;

  const mathNodes = [...document.querySelectorAll('.math')];
  report.untypesetMath = mathNodes
    .filter(el => !el.querySelector('mjx-container') && el.tagName !== 'MJX-CONTAINER')
    .map(el => el.textContent.trim().slice(0, 120));

  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight')
    .forEach(el => el.remove());
  const text = main.textContent;
  report.rawTex = ['$$', '\\\\(', '\\\\)', '\\\\[', '\\\\]', '\\\\begin{', '\\\\frac']
    .filter(token => text.includes(token))
    .map(token => {
      const at = text.indexOf(token);
      return token + ' in "' + text.slice(Math.max(0, at - 60), at + 60).replace(/\\s+/g, ' ') + '"';
    });
  report.errorBoxes = [...document.querySelectorAll('.vega-embed .error, [id^="altair-viz-"] .error')]
    .map(el => el.textContent.trim().slice(0, 200));

  // Nothing wider than the content column: cell outputs (charts, tables, printed text) and
  // display equations must not need a horizontal scrollbar.
  const column = document.querySelector('.bd-article') || document.querySelector('main');
  const pad = parseFloat(getComputedStyle(column).paddingRight) || 0;
  const columnRight = column.getBoundingClientRect().right - pad + 1;
  const label = el => {
    const cell = el.closest('.cell');
    const id = cell && cell.previousElementSibling ? (cell.id || '') : '';
    return (el.className || el.tagName) + ' ' + id + ': ' + el.textContent.trim().replace(/\\s+/g, ' ').slice(0, 80);
  };
  report.columnWidth = Math.round(column.clientWidth - pad
                                  - (parseFloat(getComputedStyle(column).paddingLeft) || 0));
  report.wideOutputs = [...document.querySelectorAll('.cell_output, .cell_output .output')]
    .filter(el => el.scrollWidth > el.clientWidth + 1)
    .map(el => `${el.scrollWidth}/${el.clientWidth} px: ` + label(el));
  report.wideCharts = [...document.querySelectorAll('.vega-embed')]
    .filter(el => [...el.querySelectorAll('svg, canvas')].some(c => c.getBoundingClientRect().right > columnRight))
    .map(el => label(el));
  report.wideMath = [...document.querySelectorAll('div.math, mjx-container[display="true"]')]
    .filter(el => el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > columnRight
                  || [...el.querySelectorAll('mjx-math')].some(m => m.getBoundingClientRect().right > columnRight))
    .map(el => el.textContent.trim().slice(0, 80));

  // Every legend is inside the visible column and draws a visible symbol for every entry: a
  // line-shaped symbol (a dash legend) needs a stroke, an area symbol a fill or a stroke.
  const visible = c => c && c !== 'none' && c !== 'transparent';
  report.legends = 0;
  report.badLegends = [];
  document.querySelectorAll('.vega-embed svg .role-legend').forEach(legend => {
    report.legends += 1;
    const box = legend.getBoundingClientRect();
    const embed = legend.closest('.vega-embed');
    if (box.width > 0 && box.right > columnRight) {
      report.badLegends.push(`legend beyond the column (${Math.round(box.right)} > ${Math.round(columnRight)}): `
                             + legend.textContent.slice(0, 60));
    }
    legend.querySelectorAll('.role-legend-symbol path').forEach(path => {
      const b = path.getBBox();
      const stroked = visible(path.getAttribute('stroke')) && parseFloat(path.getAttribute('stroke-width') || '1') > 0;
      const filled = visible(path.getAttribute('fill')) && b.width > 0.5 && b.height > 0.5;
      if (!stroked && !filled) {
        report.badLegends.push('invisible legend symbol in: ' + legend.textContent.slice(0, 60));
      }
    });
  });
  return report;
}
"""


@pytest.mark.parametrize("page_path", toc_pages())
def test_page_renders_offline(page_path, browser, book_server, built_html):
    assert (built_html / page_path).is_file(), f"{page_path} was not built"
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    remote: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []

    def route(route_, request):
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route_.continue_()
        else:
            remote.append(request.url)
            route_.abort()

    context.route("**/*", route)
    page.on(
        "console",
        lambda msg: console_errors.append(f"{msg.text} @ {msg.location.get('url', '')}")
        if msg.type == "error"
        else None,
    )
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        page.goto(f"{book_server}/{page_path}", wait_until="networkidle")
        # Charts and widgets draw asynchronously after the load event.
        try:
            page.wait_for_function(
                """() => [...document.querySelectorAll('[id^="altair-viz-"], .vega-embed')]
                          .every(el => el.querySelector('svg, canvas, .error'))
                   && [...document.querySelectorAll(
                          'script[type="application/vnd.jupyter.widget-view+json"]')]
                          .every(s => s.parentElement.querySelector('.jupyter-widgets'))""",
                timeout=RENDER_TIMEOUT_MS,
            )
        except Exception:  # the report below says what is missing
            pass
        page.wait_for_load_state("networkidle")
        report = page.evaluate(INSPECT_PAGE)
    finally:
        context.close()

    problems = []
    if remote:
        problems.append(f"requests to other hosts: {sorted(set(remote))}")
    if console_errors:
        problems.append(f"console errors: {console_errors}")
    if page_errors:
        problems.append(f"JavaScript errors: {page_errors}")
    if report["blankCharts"] or report["errorBoxes"]:
        problems.append(f"charts not drawn: {report['blankCharts']} {report['errorBoxes']}")
    if report["unrenderedWidgets"]:
        problems.append(f"widget views not rendered: {report['unrenderedWidgets']}")
    if report["widgetViews"] and not report["widgetControls"]:
        problems.append("widget views rendered no controls")
    if report["untypesetMath"]:
        problems.append(f"math not typeset by MathJax: {report['untypesetMath']}")
    if report["rawTex"]:
        problems.append(f"raw TeX in the page text: {report['rawTex']}")
    if report["wideOutputs"] or report["wideCharts"]:
        problems.append(f"outputs wider than the {report['columnWidth']}-px column: "
                        f"{report['wideOutputs']} {report['wideCharts']}")
    if report["wideMath"]:
        problems.append(f"equations wider than the column: {report['wideMath']}")
    if report["badLegends"]:
        problems.append(f"legends: {report['badLegends']}")
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)


# Chapter 3's figure of the tangent and the chord has a slider for the weight w1, bound to an
# Altair parameter: moving it must redraw the chart in the static page, with no kernel.
SLIDER_PAGE = "book/03_linear_approximation.html"
SLIDER_NAME = "w1"

SNAPSHOT_CHART = """
(name) => {
  const input = document.querySelector(`.vega-bindings input[type="range"][name="${name}"]`);
  if (!input) { return null; }
  const embed = input.closest('.vega-embed');
  const drawn = embed.querySelector('svg.marks, svg, canvas');
  return {value: input.value, min: input.min, max: input.max,
          picture: drawn.tagName === 'CANVAS' ? drawn.toDataURL() : drawn.outerHTML};
}
"""

MOVE_SLIDER = """
([name, value]) => {
  const input = document.querySelector(`.vega-bindings input[type="range"][name="${name}"]`);
  input.value = value;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new Event('change', {bubbles: true}));
}
"""


def test_altair_slider_redraws_offline(browser, book_server, built_html):
    assert (built_html / SLIDER_PAGE).is_file()
    context = browser.new_context(viewport=VIEWPORT)
    context.route("**/*", lambda route, request: route.continue_()
                  if urlsplit(request.url).hostname in LOCAL_HOSTS or request.url.startswith(("data:", "blob:"))
                  else route.abort())
    page = context.new_page()
    try:
        page.goto(f"{book_server}/{SLIDER_PAGE}", wait_until="networkidle")
        page.wait_for_function(f"() => document.querySelector('.vega-bindings input[name=\"{SLIDER_NAME}\"]')",
                               timeout=RENDER_TIMEOUT_MS)
        before = page.evaluate(SNAPSHOT_CHART, SLIDER_NAME)
        assert before is not None, f"no slider named {SLIDER_NAME} on {SLIDER_PAGE}"
        target = before["min"] if before["value"] != before["min"] else before["max"]
        page.evaluate(MOVE_SLIDER, [SLIDER_NAME, target])
        page.wait_for_timeout(500)
        after = page.evaluate(SNAPSHOT_CHART, SLIDER_NAME)
    finally:
        context.close()
    assert after["value"] == target != before["value"]
    assert after["picture"] != before["picture"], "moving the slider did not change the chart"
