"""The installer (python -m gimp_plugin install/uninstall) on temporary folders."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gimp_plugin import installer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("gimp,system,env,expected", [
    ("3", "linux", {}, "HOME/.config/GIMP/3.0/plug-ins"),
    ("3", "linux", {"XDG_CONFIG_HOME": "XDG"}, "XDG/GIMP/3.0/plug-ins"),
    ("2.10", "linux", {}, "HOME/.config/GIMP/2.10/plug-ins"),
    ("3", "windows", {"APPDATA": "APPDATA"}, "APPDATA/GIMP/3.0/plug-ins"),
    ("2.10", "windows", {"APPDATA": "APPDATA"}, "APPDATA/GIMP/2.10/plug-ins"),
    ("2.10", "windows", {}, "HOME/AppData/Roaming/GIMP/2.10/plug-ins"),
    ("3", "macos", {}, "HOME/Library/Application Support/GIMP/3.0/plug-ins"),
    ("2.10", "macos", {}, "HOME/Library/Application Support/GIMP/2.10/plug-ins"),
    ("3", "linux", {"GIMP3_DIRECTORY": "G3"}, "G3/plug-ins"),
    ("2.10", "macos", {"GIMP2_DIRECTORY": "G2"}, "G2/plug-ins"),
])
def test_user_plugin_dir(tmp_path, gimp, system, env, expected):
    env = {k: str(tmp_path / v) for k, v in env.items()}
    got = installer.user_plugin_dir(gimp, system, env, home=tmp_path / "HOME")
    assert got == tmp_path / expected


def _mode(p):
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("system", installer.SYSTEMS)
@pytest.mark.parametrize("gimp", installer.VERSIONS)
def test_install_uninstall_layout(tmp_path, gimp, system):
    dest = installer.user_plugin_dir(gimp, system, {"APPDATA": str(tmp_path / "AppData")}, home=tmp_path)
    other = dest / "someone_elses_plugin"
    other.mkdir(parents=True)
    written = installer.install(gimp, dest)
    if gimp == "3":   # GIMP 3 registers only plug-ins/NAME/NAME.py
        main = dest / "oldphoto_restore" / "oldphoto_restore.py"
        lib = dest / "oldphoto_restore"
    else:             # GIMP 2.10 queries every executable file: helpers live in a folder
        main = dest / "oldphoto_restore.py"
        lib = dest / "oldphoto_restore_lib"
    assert written[0] == main
    assert sorted(p.name for p in lib.iterdir() if p != main) == ["oldphoto_client.py", "oldphoto_common.py"]
    assert _mode(main) & 0o111 == 0o111
    for helper in ("oldphoto_client.py", "oldphoto_common.py"):
        assert _mode(lib / helper) & 0o111 == 0
    assert (lib / "oldphoto_client.py").read_bytes() == (ROOT / "server" / "client.py").read_bytes()
    assert (lib / "oldphoto_common.py").read_bytes() == (ROOT / "gimp_plugin/common/oldphoto_common.py").read_bytes()
    installer.install(gimp, dest)           # again: replaces, no leftovers
    assert not list(dest.rglob("*.tmp"))
    removed = installer.uninstall(gimp, dest)
    assert len(removed) == 3 and not main.exists() and not lib.exists()
    assert other.is_dir()                    # other plug-ins untouched


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gimp_plugin", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_cli_install_reports_dependencies(tmp_path):
    r = _cli("install", "--gimp", "3", "--dest", str(tmp_path / "d"), "--python", sys.executable)
    assert r.returncode == 0, r.stderr
    assert "ok: " in r.stdout and "can import pyzmq and msgpack" in r.stdout
    assert (tmp_path / "d" / "oldphoto_restore" / "oldphoto_restore.py").is_file()
    # a GIMP Python without pyzmq: the person is told what to run
    fake = tmp_path / "gimp-python"
    fake.write_text("#!/bin/sh\necho 'ImportError: No module named zmq' >&2\nexit 1\n")
    fake.chmod(0o755)
    r = _cli("install", "--gimp", "2.10", "--dest", str(tmp_path / "d2"), "--python", str(fake))
    assert r.returncode == 0, r.stderr
    assert "ACTION NEEDED" in r.stdout and f'"{fake}" -m pip install pyzmq msgpack' in r.stdout
    assert "No module named zmq" in r.stdout
    r = _cli("uninstall", "--gimp", "2.10", "--dest", str(tmp_path / "d2"))
    assert r.returncode == 0 and "removed 3 file(s)" in r.stdout
    assert not (tmp_path / "d2" / "oldphoto_restore.py").exists()


def test_cli_default_destination_uses_gimp_folder(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    r = _cli("install", "--gimp", "3", "--no-check", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cfg/GIMP/3.0/plug-ins/oldphoto_restore/oldphoto_restore.py").is_file()
    r = _cli("uninstall", "--gimp", "3", env=env)
    assert not (tmp_path / "cfg/GIMP/3.0/plug-ins/oldphoto_restore").exists()
