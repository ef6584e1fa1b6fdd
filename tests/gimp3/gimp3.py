"""Run a real GIMP 3 (gimp-console-3.0 in the debootstrapped chroot) with batch code.

The chroot is built once by build_chroot.sh and cached outside git. A run uses
``unshare --mount --pid --fork`` (no --net: GIMP's plug-ins reach a server on
the host's 127.0.0.1) and bind-mounts one host folder at /mnt/oldphoto, which
holds the batch code, the data exchanged with it and a fresh $HOME (so GIMP's
user plug-in folder is $HOME/.config/GIMP/3.0/plug-ins).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHROOT = Path(os.environ.get("OLDPHOTO_GIMP3_CHROOT", "/var/cache/oldphoto-gimp3-chroot"))
STAMP = ".oldphoto-chroot-ready"
INSIDE = "/mnt/oldphoto"


def unavailable_reason() -> str | None:
    """Why a real GIMP 3 cannot run here, or None when it can (building the chroot if needed)."""
    if os.environ.get("OLDPHOTO_SKIP_GIMP3"):
        return "OLDPHOTO_SKIP_GIMP3 is set"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (debootstrap, chroot, unshare)"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (CHROOT / STAMP).is_file():
        if shutil.which("debootstrap") is None:
            return "debootstrap is not installed (apt-get install debootstrap) and no chroot is cached at %s" % CHROOT
        t = time.time()
        r = subprocess.run(["bash", str(HERE / "build_chroot.sh")], capture_output=True, text=True)
        if r.returncode != 0:
            return "building the GIMP 3 chroot failed: " + (r.stderr or r.stdout).strip()[-800:]
        print(f"[gimp3] chroot built in {time.time() - t:.0f} s at {CHROOT}")
    return None


def plugin_dir(share: Path) -> Path:
    """GIMP 3's user plug-in folder for runs that use ``share``."""
    return share / "home" / ".config" / "GIMP" / "3.0" / "plug-ins"


def run_batch(share: Path, code: str, timeout: float = 120, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    """Run python-fu-eval batch ``code`` in GIMP 3; ``share`` is visible inside as /mnt/oldphoto.
    ``env``: extra environment for GIMP (and so its plug-ins)."""
    share = Path(share)
    (share / "home").mkdir(parents=True, exist_ok=True)
    (share / "batch.py").write_text(code)
    mnt = CHROOT / INSIDE.lstrip("/")
    mnt.mkdir(parents=True, exist_ok=True)
    inner = (
        f"mount -t proc proc {CHROOT}/proc && mount --rbind /dev {CHROOT}/dev && "
        f"mount --bind {share} {mnt} && "
        f"exec chroot {CHROOT} env -i PATH=/usr/bin:/bin HOME={INSIDE}/home "
        f"XDG_CONFIG_HOME={INSIDE}/home/.config LANG=C.UTF-8 "
        + "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items()) +
        "gimp-console-3.0 -i --batch-interpreter=python-fu-eval "
        f"-b \"exec(open('{INSIDE}/batch.py').read())\" --quit"
    )
    return subprocess.run(["unshare", "--mount", "--pid", "--fork", "bash", "-c", inner],
                          capture_output=True, text=True, timeout=timeout)
