"""The console script: `serve` added, `train` and `presets` still there.

(In-process imports of the `server` package are avoided here: pytest names this test
package `server` too, so the real one is exercised through subprocesses.)
"""
from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_serve_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for opt in ("--host", "--port", "--data-dir", "--token", "--max-workers"):
        assert opt in out.stdout


def test_presets_and_train_still_work():
    out = subprocess.run([sys.executable, "-m", "server.cli", "presets"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "lenet" in out.stdout
    out = subprocess.run([sys.executable, "-m", "server.cli", "train", "--preset", "digits8-mlp",
                          "--epochs", "1", "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and '"summary": true' in out.stdout


def test_bad_serve_options_are_clear():
    out = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--max-workers", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--max-workers" in out.stderr
    assert "Traceback" not in out.stderr
