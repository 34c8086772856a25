"""The model index in the cache (models.json): concurrent writers, damaged contents.

Issue 15, item 4: writers raced through one shared temporary name with no lock (two writers
left invalid JSON, eight kept 61-71 of 400 entries), and a damaged index (`[]`, a number in
place of a path) ended `nlq compress` and `nlq decompress` in tracebacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import small_codec
from PIL import Image

from nlq_jax import cli
from nlq_jax.codec import api, model_index

WRITERS, ENTRIES = 8, 50
# One writer process: waits for the start signal (so that all write at once), then records
# ENTRIES models. It imports only the index module, so it starts in milliseconds.
_WRITER = """
import os, sys, time
from nlq_jax.codec import model_index
worker, go = int(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(ENTRIES):
    assert model_index.remember(bytes([worker, i]) + bytes(14), f"/exports/{worker}/{i}")
""".replace("ENTRIES", str(ENTRIES))


def test_concurrent_writers_keep_every_entry_and_valid_json(tmp_path):
    home, go = tmp_path / "home", tmp_path / "go"
    env = {**os.environ, "NLQ_HOME": str(home)}
    workers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(w), str(go)], env=env)
        for w in range(WRITERS)
    ]
    time.sleep(0.3)  # let them start
    go.touch()
    for p in workers:
        assert p.wait(timeout=120) == 0
    index = json.loads((home / "models.json").read_text())
    expected = {
        (bytes([w, i]) + bytes(14)).hex(): os.path.abspath(f"/exports/{w}/{i}")
        for w in range(WRITERS)
        for i in range(ENTRIES)
    }
    assert index == expected
    # Nothing but the index and its lock file is left in the folder (no temporary files).
    assert sorted(p.name for p in home.iterdir()) == ["models.json", "models.json.lock"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return small_codec("hyperprior", trained=False).save(tmp_path_factory.mktemp("m") / "export")


def _garbage(model_hash: str) -> dict[str, bytes]:
    return {
        "list": b"[]",
        "number for a path": json.dumps({model_hash: 5}).encode(),
        "short key": json.dumps({"h": 5}).encode(),
        "binary junk": bytes(range(256)) * 4,
        "truncated": b'{"' + model_hash.encode() + b'": "/x',
    }


def test_damaged_index_is_ignored_with_a_warning_and_rewritten(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NLQ_HOME", str(tmp_path))
    index, kept = tmp_path / "models.json", {"ab" * 16: "/kept"}
    for kind, junk in _garbage("cd" * 16).items():
        # Read: the valid entries, one warning line; the file is repaired.
        index.write_bytes(junk[:-1] + b', "' + b"ab" * 16 + b'": "/kept"}' if kind == "short key"
                          else junk)  # fmt: skip
        assert model_index.read_index() == (kept if kind == "short key" else {}), kind
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "warning" in err[0] and str(index) in err[0], (kind, err)
        assert json.loads(index.read_text()) == (kept if kind == "short key" else {}), kind
        # Write: the entry is recorded, one warning line.
        index.write_bytes(junk)
        assert api.remember(bytes(16), "/x"), kind
        assert len(capsys.readouterr().err.splitlines()) == 1, kind
        assert json.loads(index.read_text()) == {"00" * 16: os.path.abspath("/x")}, kind
    assert model_index.read_index() == {"00" * 16: os.path.abspath("/x")}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["list", "number for a path"])
def test_damaged_index_is_no_traceback_for_the_commands(tmp_path, export, monkeypatch, capsys,
                                                        kind):  # fmt: skip
    """`[]` and {hash: 5} gave tracebacks from both `nlq compress` and `nlq decompress`."""
    home = tmp_path / "home"
    monkeypatch.setenv("NLQ_HOME", str(home))
    model_hash = api.Codec.load(export).hash.hex()
    junk = _garbage(model_hash)[kind]
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), np.uint8)).save(image)
    nlq, out = tmp_path / "x.nlq", tmp_path / "out.png"
    capsys.readouterr()
    index = home / "models.json"
    # compress: the index is rewritten, with the model's entry.
    index.write_bytes(junk)
    assert cli.main(["compress", str(image), str(nlq), "--checkpoint", str(export), "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "warning" in err[0] and "models.json" in err[0], err
    assert json.loads(index.read_text()) == {model_hash: str(export)}
    # decompress without --checkpoint: the damaged index does not know the model.
    index.write_bytes(junk)
    assert cli.main(["decompress", str(nlq), str(out), "-q"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "warning" in err[0] and "models.json" in err[0], err
    assert err[1].startswith("nlq decompress: error:") and "--checkpoint" in err[1], err
    assert json.loads(index.read_text()) == {}  # repaired
    # decompress naming the model: it works, and the index learns the model again.
    index.write_bytes(junk)
    argv = ["decompress", str(nlq), str(out), "--checkpoint", str(export), "-q"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "warning" in err[0], err
    assert cli.main(["decompress", str(nlq), str(out), "-q"]) == 0
    assert capsys.readouterr().err == ""
