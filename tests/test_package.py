"""The package itself: importing it is cheap and silent, its version has one source, and the
``Example:`` blocks of its docstrings run as doctests."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import sparse_ir

PACKAGE = Path(sparse_ir.__file__).parent
HEAVY = (
    "torch",
    "transformers",
    "tokenizers",
    "numba",
    "scipy",
    "faiss",
    "tqdm",
    "ray",
    "openvino",
    "onnxruntime",
)


def test_import_is_cheap_and_silent():
    code = (
        "import json, sys; import sparse_ir; print(json.dumps(sorted("
        f"m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert done.stderr == ""
    assert json.loads(done.stdout) == []


def test_only_the_distributed_package_imports_ray():
    """``ray`` is an extra: importing sparse_ir.distributed is cheap, and no other module
    names it."""
    code = (
        "import json, sys; import sparse_ir.distributed, sparse_ir.index.sharded; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert json.loads(done.stdout) == []
    outside = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "distributed" not in path.parts
        and any(
            line.strip().startswith(("import ray", "from ray"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert outside == []


def test_version_comes_from_the_installed_metadata():
    assert sparse_ir.__version__ == metadata.version("sparse-ir")
    assert "__version__" in dir(sparse_ir)


def _modules_with_examples() -> list[str]:
    """Every sparse_ir module whose source has a ``>>>`` line (found without importing it)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>> " in path.read_text(encoding="utf-8"):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_the_main_classes_have_examples():
    assert {"sparse_ir.sparse_batch", "sparse_ir.quantize", "sparse_ir.results"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert attempted > 0, f"{name} has '>>> ' in its source but no doctest ran"
    assert failures == 0, f"{failures} of {attempted} examples of {name} failed (see above)"
