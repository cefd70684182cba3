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
