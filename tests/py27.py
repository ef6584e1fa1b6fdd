"""Finding a real Python 2.7 (GIMP 2.10's interpreter) for the optional 2.7 tests."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from typing import Optional


def find_python27(modules: tuple[str, ...] = ()) -> Optional[str]:
    """A Python 2.7 that can import ``modules``: ``$OLDPHOTO_PYTHON27``, then
    ``python2.7`` on PATH, then pyenv's 2.7 builds; None when there is none."""
    candidates = [os.environ.get("OLDPHOTO_PYTHON27", ""), shutil.which("python2.7") or "",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python2.7")))]
    code = "import sys%s; assert sys.version_info[:2] == (2, 7)" % "".join(", " + m for m in modules)
    for exe in filter(None, candidates):
        try:
            r = subprocess.run([exe, "-c", code], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return exe
    return None
