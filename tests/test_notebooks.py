"""The Colab notebooks (colab/*.ipynb) run top to bottom at tiny sizes, so that none can rot.

Each notebook is executed by nbclient in a fresh kernel of this interpreter (the virtualenv's
python, whatever other kernels Jupyter knows), in a temporary directory, with
NLQ_NOTEBOOK_TINY=1 (each notebook's parameter cell then picks sizes that run in seconds; its
install cell is skipped because nlq_jax is importable). A cell that raises fails the test. A
new notebook in colab/ is picked up by the glob.

XLA compiles the kernels' programs at LLVM optimization level 0: compiling is most of a tiny
notebook's time (training steps are few and small), and level 0 halves it; what is tested is
that every cell runs, not how fast the compiled code is.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

COLAB = Path(__file__).resolve().parents[1] / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5, f"expected the Colab notebooks in {COLAB}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: clear the outputs of cells {dirty}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbclient  # the "test" extra
    import nbformat

    # A kernel spec of this interpreter, so that no other "python3" kernel is picked.
    spec = tmp_path / "jupyter" / "kernels" / "nlq-test-python"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "nlq test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no profile from $HOME
    monkeypatch.setenv("NLQ_NOTEBOOK_TINY", "1")
    flags = os.environ.get("XLA_FLAGS", "")
    monkeypatch.setenv("XLA_FLAGS", f"{flags} --xla_backend_optimization_level=0".strip())
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="nlq-test-python",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    start, cpu = time.perf_counter(), _children_cpu_s()
    client.execute()  # raises CellExecutionError (with the cell and its traceback) on error
    wall, cpu = time.perf_counter() - start, _children_cpu_s() - cpu
    print(f"\n{path.name}: {wall:.1f} s wall, {cpu:.1f} s CPU (kernel and its subprocesses)")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
