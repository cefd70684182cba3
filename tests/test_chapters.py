"""Every executable chapter runs top to bottom with papermill, quickly, on its own.

A chapter is executable when it is listed in ``_toc.yml`` and its MyST file
starts with jupytext front matter (a ``jupytext:`` block).  papermill cannot
open MyST Markdown itself, so each chapter is read with ``jupytext.read`` and
written as ``.ipynb``, **alone, into an empty folder**, where it is executed
with ``papermill.execute_notebook`` with this environment's ``python3`` kernel
and the installed ``stidi`` package.  That is what a reader who downloads the
notebook from the book gets: no ``book/`` folder (so no helper modules next to
the chapter), no ``../results`` and no repository scripts.  The committed
results come from :mod:`stidi.results`.  A source check rejects the patterns
that would only work inside the repository.

``CHAPTER_PARAMETERS`` holds small per-chapter overrides, injected after the
cell tagged ``parameters``; only names that cell defines are passed.  Wall
times are printed at the end of the session and written to
``_build/chapter-times.json``.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.book

REPO = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 120.0
TIMES_FILE = REPO / "_build" / "chapter-times.json"

#: Parameter overrides per chapter (document name as in ``_toc.yml``).
CHAPTER_PARAMETERS: dict[str, dict] = {
    "book/01_temporal_coding": {"n_stats": 200, "n_rate": 50},
    "book/02_pl_psp_neuron": {"n_images": 4, "n_neurons": 20, "dts": [4.0, 2.0, 1.0, 0.5, 0.25],
                              "repeats": 2},
    "book/03_linear_approximation": {"n_images": 12, "n_neurons": 40, "n_plot": 100},
    "book/04_stidi_bp_rule": {"n_per_class": 8, "epochs": 3, "n_hidden": 8},
    "book/05_deep_fc": {"n_val": 200, "n_train": 500, "width": 40, "depths": [1, 2], "epochs": 2,
                        "lr_outputs_compared": [1.6e-5, 6.4e-5], "sweep_width": 20, "sweep_train": 300,
                        "sweep_epochs": 1},
    "book/06_conv": {"n_train": 300, "n_val": 100, "epochs": 1, "init_samples": 30},
    "book/07_binary": {"n_train": 300, "n_val": 100, "epochs": 2, "n_cost": 50, "init_samples": 30},
    "book/08_reproduction": {"demo_hidden": 30, "demo_epochs": 1},
    "book/09_speed": {"n_images": 40, "grid_images": 2, "widths": [25, 100], "fan_ins": [196, 784],
                      "windows": [32, 128], "thread_images": 200, "abl_train": 600, "abl_hidden": 30,
                      "abl_epochs": 1, "repeats": 1},
}


def _front_matter(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    data = yaml.safe_load(text[4:end])
    return data if isinstance(data, dict) else {}


def executable_chapters() -> list[str]:
    from sphinx_external_toc.parsing import parse_toc_yaml

    chapters = []
    for name in parse_toc_yaml(REPO / "_toc.yml"):
        path = REPO / f"{name}.md"
        if path.is_file() and "jupytext" in _front_matter(path):
            chapters.append(name)
    return chapters


@pytest.fixture(scope="module")
def chapter_times(request):
    times: dict[str, float] = {}
    yield times
    if not times:
        return
    recorded = {}
    if TIMES_FILE.is_file():
        try:
            recorded = json.loads(TIMES_FILE.read_text())
        except json.JSONDecodeError:
            recorded = {}
    recorded.update({name: round(t, 2) for name, t in times.items()})
    TIMES_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMES_FILE.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_sep("-", f"chapter wall times (limit {TIME_LIMIT_S:.0f} s)")
        for name, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
            reporter.write_line(f"{seconds:8.2f} s  {name}")


def test_toc_lists_executable_chapters():
    assert executable_chapters(), "no chapter in _toc.yml has jupytext front matter"


#: Code that only works inside the repository: helper modules of ``book/``, relative paths out of
#: the chapter's folder, and repository scripts run from a chapter.
REPO_ONLY = re.compile(r"import bookutils|import results_table|\.\./|Path\(\"\.\.\"\)|"
                       r"[\"']benchmarks/|[\"']scripts/|cwd=\"\.\.\"")


@pytest.mark.parametrize("chapter", executable_chapters())
def test_chapter_code_needs_no_repository(chapter):
    import jupytext

    notebook = jupytext.read(REPO / f"{chapter}.md")
    hits = [f"cell {i}: {m.group(0)!r}" for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            for m in REPO_ONLY.finditer(cell.source)]
    assert not hits, f"{chapter} uses the repository layout: {hits}"


def test_repository_pattern_check_catches_them():
    for bad in ['import bookutils', 'Path("..") / "results"', 'open("../results/x.json")',
                'run(["python", "benchmarks/bench_fc.py"])', 'subprocess.run(cmd, cwd="..")']:
        assert REPO_ONLY.search(bad), bad
    assert not REPO_ONLY.search('stidi.results.load_report("fc-mnist")')


@pytest.mark.parametrize("chapter", executable_chapters())
def test_chapter_executes(chapter, chapter_times, tmp_path):
    """The chapter, exported to .ipynb and copied alone into an empty folder, runs there."""
    import jupytext
    import nbformat
    import papermill

    source = REPO / f"{chapter}.md"
    notebook = jupytext.read(source)
    stem = Path(chapter).name
    alone = tmp_path / "alone"
    alone.mkdir()
    input_path = alone / f"{stem}.ipynb"
    nbformat.write(notebook, input_path)
    assert [p.name for p in alone.iterdir()] == [input_path.name]

    overrides = CHAPTER_PARAMETERS.get(chapter, {})
    declared = papermill.inspect_notebook(input_path)
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        warnings.warn(
            f"{chapter}: overrides {unknown} name no variable of its `parameters` cell; ignored",
            stacklevel=1,
        )
    parameters = {k: v for k, v in overrides.items() if k in declared}

    start = time.perf_counter()
    papermill.execute_notebook(
        str(input_path),
        str(tmp_path / f"{stem}.out.ipynb"),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(alone),
        progress_bar=False,
        request_save_on_cell_execute=False,
        execution_timeout=int(TIME_LIMIT_S),
    )
    elapsed = time.perf_counter() - start
    chapter_times[chapter] = elapsed
    assert elapsed < TIME_LIMIT_S, f"{chapter} took {elapsed:.1f} s (limit {TIME_LIMIT_S:.0f} s)"
