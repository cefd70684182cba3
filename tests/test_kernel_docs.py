"""Every Numba kernel names the book chapter (and equation) it implements, and those exist."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = re.compile(r"book/(\w+)\.md")
LABEL = re.compile(r"\beq-[a-z0-9-]+[a-z0-9]")


def _is_njit(dec) -> bool:
    node = dec.func if isinstance(dec, ast.Call) else dec
    return isinstance(node, ast.Name) and node.id == "njit" or \
        isinstance(node, ast.Attribute) and node.attr == "njit"


def kernels():
    for path in sorted((ROOT / "stidi").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(_is_njit(d) for d in node.decorator_list):
                yield pytest.param(path.name, node.name, ast.get_docstring(node) or "",
                                   id=f"{path.stem}.{node.name}")


def labels(chapter: Path) -> set:
    """Equation labels of a chapter: ``(eq-x)=`` target lines and ``$$ (eq-x)`` equation labels."""
    text = chapter.read_text()
    return set(re.findall(r"^\((eq-[\w-]+)\)=\s*$", text, re.M)) | \
        set(re.findall(r"\$\$\s*\((eq-[\w-]+)\)", text))


@pytest.mark.parametrize("module, name, doc", list(kernels()))
def test_kernel_docstring_names_its_chapter(module, name, doc):
    chapters = CHAPTER.findall(doc)
    assert chapters, f"stidi/{module}:{name} has no 'Chapter: book/NN_name.md' in its docstring"
    files = [ROOT / "book" / f"{c}.md" for c in chapters]
    for f in files:
        assert f.is_file(), f"stidi/{module}:{name} names {f.relative_to(ROOT)}, which does not exist"
    known = set().union(*(labels(f) for f in files))
    for lab in LABEL.findall(doc):
        assert lab in known, f"stidi/{module}:{name} names {lab}, not a label of {chapters}"


def test_every_kernel_module_is_scanned():
    names = {p.values[1] for p in kernels()}
    assert {"_sweep", "_dense_update", "_conv_update", "_pool_errors_below", "_alpha_step",
            "_output_targets", "train_epoch_sgd"} <= names
