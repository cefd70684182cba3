"""The Binder environment installs what the pinned requirements install.

``environment.yml`` cannot be solved here (no conda), so its structure is
checked, its pip section is compared line by line with the requirements
files, and the pinned set is resolved against the package index with
``pip install --dry-run`` (marked slow: it asks the registry).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path, _seen: set[Path] | None = None) -> dict[str, str]:
    """Exact pins of a requirements file, following ``-r`` includes."""
    seen = _seen if _seen is not None else set()
    path = path.resolve()
    assert path not in seen, f"{path} includes itself"
    seen.add(path)
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            pins.update(read_pins(path.parent / line[3:].strip(), seen))
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: {raw!r} is not an exact pin (name==version)"
        name = _norm(match.group(1))
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def pip_section(environment: dict) -> list[str]:
    sections = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip: section"
    return [str(line).strip() for line in sections[0]]


def test_conda_part(environment):
    assert environment["channels"] == ["conda-forge"]
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda
    assert "pip" in conda


def test_pip_section_installs_the_pins_and_the_package(environment):
    lines = pip_section(environment)
    assert any(line in ("-e .", ".") for line in lines), "the pip section must install the package"
    pinned: dict[str, str] = {}
    for line in lines:
        if line in ("-e .", "."):
            continue
        if line.startswith("-r "):
            pinned.update(read_pins(REPO / line[3:].strip()))
            continue
        match = PIN.match(line)
        assert match, f"environment.yml pip line {line!r} is neither -r FILE nor an exact pin"
        pinned[_norm(match.group(1))] = match.group(2)
    runtime = read_pins(REPO / "requirements.txt")
    # Binder gets every runtime pin, at the same version; anything more it
    # installs must be pinned as in requirements-dev.txt.
    assert {k: pinned.get(k) for k in runtime} == runtime
    dev = read_pins(REPO / "requirements-dev.txt")
    extra = {k: v for k, v in pinned.items() if k not in runtime}
    assert {k: dev.get(k) for k in extra} == extra


def test_dev_requirements_include_runtime_pins():
    runtime = read_pins(REPO / "requirements.txt")
    dev = read_pins(REPO / "requirements-dev.txt")
    assert {k: dev[k] for k in runtime} == runtime
    assert "-r requirements.txt" in (REPO / "requirements-dev.txt").read_text().splitlines()


def test_pyproject_requires_what_the_runtime_pins_provide():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = read_pins(REPO / "requirements.txt")
    for requirement in project["dependencies"]:
        name = _norm(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        assert name in runtime, f"pyproject dependency {name} has no pin in requirements.txt"
    assert project["requires-python"] == ">=3.11"


@pytest.mark.slow
def test_pip_section_resolves():
    """The pinned set resolves on this Python against the package index."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
            "--ignore-installed", "--disable-pip-version-check", "-r", "requirements.txt",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


# ------------------------------------------------------------ what the wheel ships


def test_every_subpackage_is_listed_in_pyproject():
    """``pyproject.toml`` lists the packages explicitly (it maps results/ into the package)."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "stidi").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    assert config["package-dir"]["stidi._results"] == "results"


def test_wheel_ships_the_results_the_chapters_read(tmp_path):
    """The wheel holds stidi.plot, stidi.results and byte-identical copies of results/*.json."""
    import shutil
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "stidi", src / "stidi", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "results", src / "results")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("stidi-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {"stidi/plot.py", "stidi/results.py"} <= names
        reports = sorted((REPO / "results").glob("*.json"))
        assert reports
        for path in reports:
            assert zf.read(f"stidi/_results/{path.name}") == path.read_bytes(), path.name


# ------------------------------------------------------------ make lab


def _lab_commands() -> list[str]:
    """The commands `make lab` runs (dry run, so nothing is installed)."""
    out = subprocess.run(["make", "-n", "-s", "lab"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.book
def test_make_lab_opens_chapters_as_paired_notebooks(tmp_path):
    """`make lab`'s JupyterLab serves a chapter's MyST file as a notebook and pairs it with an .ipynb copy."""
    import json
    import os
    import shlex
    import socket
    import time
    import urllib.request

    commands = _lab_commands()
    (lab,) = [c for c in commands if " lab " in c and "jupyter" in c]
    (overrides,) = [c for c in commands if "overrides.json" in c and c.startswith("echo")]
    settings = json.loads(shlex.split(overrides)[1])
    assert settings["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["markdown"] == "Jupytext Notebook"
    args = shlex.split(lab)
    assert Path(args[0]).name == "jupyter" and args[1] == "lab"
    flags = [a for a in args[2:] if a.startswith("--") and "app_settings_dir" not in a]
    assert any(a.startswith("--ContentsManager.formats=") for a in flags)

    # the same flags, on a copy of one chapter, with this environment's jupyter
    (tmp_path / "book").mkdir()
    shutil_copy = (REPO / "book" / "01_temporal_coding.md").read_text(encoding="utf-8")
    (tmp_path / "book" / "01_temporal_coding.md").write_text(shutil_copy, encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    extra = ["--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=t",
             f"--ServerApp.root_dir={tmp_path}", f"--LabApp.app_settings_dir={tmp_path / 'settings'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        extra.append("--allow-root")
    server = subprocess.Popen([jupyter, "lab", *flags, *extra], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/api/contents/book/01_temporal_coding.md?token=t"
    try:
        for _ in range(120):
            try:
                model = json.load(urllib.request.urlopen(base + "&type=notebook", timeout=2))
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer")
        assert model["type"] == "notebook"
        cells = model["content"]["cells"]
        assert any(c["cell_type"] == "code" and "stidi.plot.setup()" in "".join(c["source"]) for c in cells)
        body = json.dumps({"type": "notebook", "format": "json", "content": model["content"]}).encode()
        request = urllib.request.Request(base, data=body, method="PUT",
                                         headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(request, timeout=30).status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    paired = tmp_path / "_build" / "lab" / "01_temporal_coding.ipynb"
    assert paired.is_file(), "saving did not write the paired notebook"
    assert (tmp_path / "book" / "01_temporal_coding.md").read_text(encoding="utf-8") == shutil_copy
