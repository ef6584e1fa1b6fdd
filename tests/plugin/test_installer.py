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
    assert sorted(p.name for p in lib.iterdir() if p != main) == ["oldphoto_client.py", "oldphoto_common.py",
                                                                 "oldphoto_wire.py"]
    assert _mode(main) & 0o111 == 0o111
    for helper in ("oldphoto_client.py", "oldphoto_common.py", "oldphoto_wire.py"):
        assert _mode(lib / helper) & 0o111 == 0
    assert (lib / "oldphoto_client.py").read_bytes() == (ROOT / "server" / "client.py").read_bytes()
    assert (lib / "oldphoto_wire.py").read_bytes() == (ROOT / "server" / "wire.py").read_bytes()
    assert (lib / "oldphoto_common.py").read_bytes() == (ROOT / "gimp_plugin/common/oldphoto_common.py").read_bytes()
    installer.install(gimp, dest)           # again: replaces, no leftovers
    assert not list(dest.rglob("*.tmp"))
    removed = installer.uninstall(gimp, dest)
    assert len(removed) == 4 and not main.exists() and not lib.exists()
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
    assert r.returncode == 0 and "removed 4 file(s)" in r.stdout
    assert not (tmp_path / "d2" / "oldphoto_restore.py").exists()


def test_cli_default_destination_uses_gimp_folder(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    r = _cli("install", "--gimp", "3", "--no-check", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cfg/GIMP/3.0/plug-ins/oldphoto_restore/oldphoto_restore.py").is_file()
    r = _cli("uninstall", "--gimp", "3", env=env)
    assert not (tmp_path / "cfg/GIMP/3.0/plug-ins/oldphoto_restore").exists()


def _interp(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "pygimp.interp"
    f.write_text(text)
    return f


def test_interpreter_settings_are_read_like_gimp(tmp_path):
    prefix = tmp_path / "GIMP 3"
    d = prefix / "lib" / "gimp" / "3.0" / "interpreters"
    f = _interp(d, "python=bin/python.exe\npython3=/usr/bin/python3\n/usr/bin/python=/opt/py/bin/python3\n"
                   ":Python:E::py::python3:\nlua=/usr/bin/luajit\n")
    user = _interp(tmp_path / "user" / "interpreters", "python3=python3.12\n")
    got = installer.interpreter_settings([tmp_path / "user" / "interpreters", tmp_path / "absent", d])
    # user folder first; a relative path is under GIMP's prefix; a bare name is looked up on PATH
    assert got == [("python3.12", user), (str(prefix / "bin/python.exe"), f),
                   ("/usr/bin/python3", f), ("/opt/py/bin/python3", f)]


def test_interpreter_dirs_per_system(tmp_path):
    linux = installer.interpreter_dirs("3", "linux", {}, home=tmp_path)
    assert linux[0] == tmp_path / ".config/GIMP/3.0/interpreters"
    assert Path("/usr/lib/gimp/3.0/interpreters") in linux
    win = installer.interpreter_dirs("2.10", "windows", {"APPDATA": "A", "ProgramFiles": "P"}, home=tmp_path)
    assert win[0] == Path("A/GIMP/2.10/interpreters") and Path("P/GIMP 2/lib/gimp/2.0/interpreters") in win
    mac = installer.interpreter_dirs("3", "macos", {}, home=tmp_path)
    assert Path("/Applications/GIMP.app/Contents/Resources/lib/gimp/3.0/interpreters") in mac


def test_dependency_report_checks_the_python_gimp_names(tmp_path):
    """Not the Python running the installer: the one in GIMP's interpreter file."""
    fake = tmp_path / "gimp-python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named zmq' >&2\nexit 1\n")
    fake.chmod(0o755)
    d = tmp_path / "interpreters"
    f = _interp(d, f"python={fake}\n")
    ok, note = installer.dependency_report("3", None, dirs=[d])
    assert not ok and f'"{fake}" -m pip install pyzmq msgpack' in note and str(f) in note
    _interp(d, f"python={sys.executable}\n")
    ok, note = installer.dependency_report("3", None, dirs=[d])
    assert ok and f"GIMP runs Python plug-ins with {sys.executable}" in note


def test_flatpak_and_snap_gimp_are_pointed_out(tmp_path):
    assert installer.sandboxed_gimp_notes("3", home=tmp_path) == []
    (tmp_path / ".var/app/org.gimp.GIMP").mkdir(parents=True)
    (tmp_path / "snap/gimp").mkdir(parents=True)
    flatpak, snap = installer.sandboxed_gimp_notes("3", home=tmp_path)
    assert str(tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins") in flatpak and "Flatpak" in flatpak
    assert str(tmp_path / "snap/gimp/current/.config/GIMP/3.0/plug-ins") in snap
    assert "docs/PLUGIN.md" in snap
