"""``python -m training`` as a person meets it: the help, the smoke run's progress and
outputs, the evaluation grid's column labels, a word when OpenCV is missing."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from training.__main__ import COMMANDS, build_parser
from training.logger import save_grid

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_each_command_once_and_names_the_presets():
    text = build_parser().format_help()
    for name in COMMANDS:
        assert len(re.findall(rf"^\s+{re.escape(name)}\b", text, re.M)) == 1, (name, text)
    assert "--preset" in text and all(p in text for p in ("default", "small", "cpu", "smoke"))


def test_grid_column_labels(tmp_path):
    rows = [[np.full((48, 48, 3), 255, np.uint8) for _ in range(3)] for _ in range(2)]
    plain = np.asarray(Image.open(save_grid(rows, tmp_path / "plain.png")))
    labelled = np.asarray(Image.open(save_grid(rows, tmp_path / "l.png", labels=["degraded input", "model", "original"])))
    strip = labelled.shape[0] - plain.shape[0]
    assert strip > 8 and np.array_equal(labelled[strip:], plain)      # the grid itself is unchanged
    for j in range(3):                                                  # ink above every column
        col = labelled[:strip, 2 + j * 50:2 + j * 50 + 48]
        assert (col < 128).any(), j


def test_smoke_run_shows_progress_and_says_where_outputs_went(tmp_path):
    run = tmp_path / "run"
    code = ("import sys; sys.modules['cv2'] = None\n"      # as on a machine without OpenCV
            "from training.__main__ import main\n"
            f"main(['--preset', 'smoke', '--train.run_dir', {str(run)!r}])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("vae-a", "vae-b", "mapping"):
        assert re.search(rf"^{stage} \[#+\] 3/3 .* img/s", r.stderr, re.M), r.stderr[-2000:]
    assert "OpenCV is not installed" in r.stdout and "opencv telea" not in r.stdout
    assert f"[all] done; outputs in {run}" in r.stdout and str(run / "weights.pt") in r.stdout
    assert str(run / "eval") in r.stdout
    assert (run / "weights.pt").is_file() and (run / "eval" / "grid.png").is_file()
