"""Install/uninstall the Restore Old Photo plug-in into a GIMP user plug-in folder.

    python -m gimp_plugin install   [--gimp 3|2.10] [--dest DIR] [--python EXE]
    python -m gimp_plugin uninstall [--gimp 3|2.10] [--dest DIR]

Layouts (DIR = GIMP's user plug-ins folder):
  GIMP 3:    DIR/oldphoto_restore/oldphoto_restore.py (executable; GIMP 3's folder rule)
             + oldphoto_common.py, oldphoto_client.py, oldphoto_wire.py beside it
  GIMP 2.10: DIR/oldphoto_restore.py (executable)
             + DIR/oldphoto_restore_lib/{oldphoto_common,oldphoto_client,oldphoto_wire}.py
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

PLUGIN = "oldphoto_restore"
LIB = PLUGIN + "_lib"
HERE = Path(__file__).resolve().parent
VERSIONS = ("3", "2.10")
SYSTEMS = ("linux", "windows", "macos")


def current_system() -> str:
    s = platform.system().lower()
    return "windows" if s.startswith("win") else "macos" if s == "darwin" else "linux"


def user_plugin_dir(gimp: str, system: str | None = None, env: Mapping[str, str] | None = None,
                    home: Path | None = None) -> Path:
    """GIMP's per-user plug-in folder for a version on an OS (GIMP's own defaults;
    GIMP2_DIRECTORY / GIMP3_DIRECTORY override them as they do in GIMP)."""
    system = system or current_system()
    env = os.environ if env is None else env
    home = Path(home) if home is not None else Path.home()
    series = "3.0" if gimp == "3" else "2.10"
    override = env.get("GIMP3_DIRECTORY" if gimp == "3" else "GIMP2_DIRECTORY")
    if override:
        return Path(override) / "plug-ins"
    if system == "windows":
        base = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        return base / "GIMP" / series / "plug-ins"
    if system == "macos":
        return home / "Library" / "Application Support" / "GIMP" / series / "plug-ins"
    base = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "GIMP" / series / "plug-ins"


def client_source() -> Path:
    """server/client.py, found without importing the server (which must stay light anyway)."""
    candidates = [HERE.parent / "server" / "client.py"]
    try:
        import importlib.util
        spec = importlib.util.find_spec("server")
        for loc in (spec.submodule_search_locations or []) if spec else []:
            candidates.append(Path(loc) / "client.py")
    except (ImportError, ValueError):
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("server/client.py not found; install the project (pip install -e .) first")


def files_for(gimp: str) -> list[tuple[Path, str, bool]]:
    """(source, destination relative to the plug-ins folder, executable) per file."""
    common = HERE / "common" / "oldphoto_common.py"
    client = client_source()
    wire = client.with_name("wire.py")   # the protocol module the client imports
    if gimp == "3":
        main, folder = (HERE / "gimp3" / PLUGIN / (PLUGIN + ".py"), f"{PLUGIN}/{PLUGIN}.py"), PLUGIN
    else:
        main, folder = (HERE / "gimp2" / (PLUGIN + ".py"), f"{PLUGIN}.py"), LIB
    return [(*main, True),
            (common, f"{folder}/oldphoto_common.py", False),
            (client, f"{folder}/oldphoto_client.py", False),
            (wire, f"{folder}/oldphoto_wire.py", False)]


def install(gimp: str, dest: Path) -> list[Path]:
    """Copy the plug-in into ``dest`` (replacing an older copy). Returns the files written."""
    dest = Path(dest)
    written = []
    for src, rel, executable in files_for(gimp):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(src, tmp)
        mode = 0o755 if executable else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, target)   # GIMP never sees a half-written plug-in
        written.append(target)
    return written


def uninstall(gimp: str, dest: Path) -> list[Path]:
    """Remove what install wrote (and the folders it made, when left empty)."""
    dest = Path(dest)
    removed = []
    for _src, rel, _x in files_for(gimp):
        target = dest / rel
        for p in (target, target.with_name(target.name + ".tmp")):
            if p.exists():
                p.unlink()
                removed.append(p)
        cache = target.parent / "__pycache__"
        if cache.is_dir():
            shutil.rmtree(cache)
        compiled = target.with_suffix(".pyc")   # Python 2 leaves these beside the module
        if compiled.exists():
            compiled.unlink()
    for folder in (dest / PLUGIN, dest / LIB):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def interpreter_dirs(gimp: str, system: str | None = None, env: Mapping[str, str] | None = None,
                     home: Path | None = None) -> list[Path]:
    """Folders where GIMP reads its interpreter settings (``*.interp``: which program runs
    ``.py`` plug-ins): the user's GIMP folder first, then the usual installation prefixes."""
    system = system or current_system()
    env = os.environ if env is None else env
    series = "3.0" if gimp == "3" else "2.0"
    dirs = [user_plugin_dir(gimp, system, env, home).parent / "interpreters"]
    if system == "windows":
        for pf in dict.fromkeys(filter(None, [env.get("ProgramFiles"), env.get("ProgramW6432"),
                                              r"C:\Program Files"])):
            folder = "GIMP 3" if gimp == "3" else "GIMP 2"
            dirs.append(Path(pf) / folder / "lib" / "gimp" / series / "interpreters")
        if env.get("LOCALAPPDATA"):   # per-user installs
            dirs.append(Path(env["LOCALAPPDATA"]) / "Programs" / ("GIMP 3" if gimp == "3" else "GIMP 2")
                        / "lib" / "gimp" / series / "interpreters")
    elif system == "macos":
        app = "GIMP.app" if gimp == "3" else "GIMP-2.10.app"
        dirs.append(Path("/Applications") / app / "Contents" / "Resources" / "lib" / "gimp" / series
                    / "interpreters")
    else:
        for prefix in ("/usr", "/usr/local", "/opt/gimp"):
            dirs.append(Path(prefix) / "lib" / "gimp" / series / "interpreters")
            dirs += sorted(Path(prefix, "lib").glob(f"*/gimp/{series}/interpreters"))   # multiarch
    return dirs


def interpreter_settings(dirs: list[Path]) -> list[tuple[str, Path]]:
    """(Python program, the .interp file naming it) from GIMP's interpreter files: lines
    ``python=PROGRAM`` (also python3=, python2=, /usr/bin/python=); a relative program
    path is relative to GIMP's installation prefix (the folder holding lib/)."""
    found: list[tuple[str, Path]] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.interp")):
            for line in f.read_text(errors="replace").splitlines():
                name, sep, program = line.strip().partition("=")
                if not sep or line.startswith(":") or not Path(name).name.startswith("python"):
                    continue
                program = program.strip()
                relative = not os.path.isabs(program) and not program.startswith(("/", "\\"))
                if relative and ("/" in program or "\\" in program):   # a bare name is found on PATH
                    program = str(d.parents[3] / program)   # PREFIX/lib/gimp/X/interpreters
                if program and all(program != p for p, _ in found):
                    found.append((program, f))
    return found


def gimp_python_candidates(gimp: str, system: str | None = None) -> list[str]:
    """Where the Python that a GIMP runs plug-ins with usually is, when GIMP's own
    interpreter settings cannot be found."""
    system = system or current_system()
    out = []
    if gimp == "3":
        if system == "windows":
            pf = os.environ.get("ProgramFiles", r"C:\Program Files")
            out += [os.path.join(pf, "GIMP 3", "bin", "python.exe"),
                    os.path.join(pf, "GIMP 3", "bin", "python3.exe")]
        elif system == "macos":
            out += ["/Applications/GIMP.app/Contents/MacOS/python3"]
        out += ["python3"]
    else:
        if system == "windows":
            pf = os.environ.get("ProgramFiles", r"C:\Program Files")
            out += [os.path.join(pf, "GIMP 2", "bin", "python.exe")]
        elif system == "macos":
            out += ["/Applications/GIMP-2.10.app/Contents/MacOS/python"]
        out += ["python2.7", "python2"]
    seen, unique = set(), []
    for c in out:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def check_python(python: str, gimp: str = "3") -> tuple[bool, str]:
    """Can ``python`` import zmq and msgpack? Returns (ok, what to tell the person)."""
    exe = shutil.which(python) or (python if os.path.isfile(python) else None)
    if exe is None:
        return False, f"{python}: not found"
    try:
        r = subprocess.run([exe, "-c", "import zmq, msgpack"], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{exe}: could not run ({e})"
    if r.returncode == 0:
        return True, f"{exe} can import pyzmq and msgpack"
    last = (r.stderr.strip().splitlines() or ["import failed"])[-1]
    hint = ("\n  (Debian/Ubuntu packages of GIMP 3: sudo apt install python3-zmq python3-msgpack)"
            if gimp == "3" else
            "\n  (GIMP 2.10 needs the last Python 2.7 releases: pyzmq<20 and msgpack<1.1)")
    return False, (f"{exe} cannot import pyzmq/msgpack ({last}).\n"
                   f"  Run: \"{exe}\" -m pip install pyzmq msgpack" + hint)


def dependency_report(gimp: str, python: str | None, dirs: list[Path] | None = None) -> tuple[bool, str]:
    """Check the Python GIMP runs plug-ins with: ``python`` when given, else the one GIMP's
    interpreter files name (``dirs``: where to look, default interpreter_dirs), else the
    usual places. Returns (ok, what to tell the person)."""
    if python:
        return check_python(python, gimp)
    settings = interpreter_settings(interpreter_dirs(gimp) if dirs is None else dirs)
    if settings:
        notes = []
        for program, source in settings:
            ok, note = check_python(program, gimp)
            note = f"{note}\n  (GIMP runs Python plug-ins with {program}, according to {source})"
            if ok:
                return True, note
            notes.append(note)
        return False, notes[0]
    notes = []
    for cand in gimp_python_candidates(gimp):
        ok, note = check_python(cand, gimp)
        if ok:
            return True, note
        if not note.endswith("not found"):
            notes.append(note)
    if notes:
        return False, notes[0]
    which = "Python 3 GIMP 3 uses" if gimp == "3" else "Python 2.7 GIMP 2.10 uses (Python-Fu)"
    return False, (f"could not find the {which}; make sure pyzmq and msgpack are installed in it "
                   f"(pass --python PATH to check a specific one).")


#: Sandboxed GIMPs keep their own user folder and their own Python (docs/PLUGIN.md).
SANDBOXES = (("Flatpak", ".var/app/org.gimp.GIMP", ".var/app/org.gimp.GIMP/config/GIMP/{series}/plug-ins"),
             ("Snap", "snap/gimp", "snap/gimp/current/.config/GIMP/{series}/plug-ins"))


def sandboxed_gimp_notes(gimp: str, home: Path | None = None) -> list[str]:
    """A note per Flatpak or Snap GIMP found in the home folder: it does not read the
    folder just installed into; where to install instead and how its Python gets pyzmq."""
    home = Path(home) if home is not None else Path.home()
    series = "3.0" if gimp == "3" else "2.10"
    notes = []
    for kind, marker, folder in SANDBOXES:
        if (home / marker).is_dir():
            dest = home / folder.format(series=series)
            notes.append(f"a {kind} GIMP is installed too; it reads its plug-ins from {dest} and runs them "
                         f"with its own Python: install with --dest \"{dest}\" --no-check and see "
                         f"docs/PLUGIN.md (Flatpak and Snap) for pyzmq and msgpack")
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gimp_plugin",
                                 description="Install the Restore Old Photo plug-in into GIMP.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("install", "uninstall"):
        p = sub.add_parser(name)
        p.add_argument("--gimp", choices=VERSIONS, default="3", help="GIMP version (default 3)")
        p.add_argument("--dest", type=Path, help="plug-ins folder (default: GIMP's user folder)")
        if name == "install":
            p.add_argument("--python", help="the Python GIMP runs plug-ins with, to check for pyzmq/msgpack")
            p.add_argument("--no-check", action="store_true", help="skip the pyzmq/msgpack check")
    args = ap.parse_args(argv)
    dest = args.dest or user_plugin_dir(args.gimp)
    if args.command == "uninstall":
        removed = uninstall(args.gimp, dest)
        print(f"removed {len(removed)} file(s) from {dest}" if removed
              else f"nothing to remove in {dest}")
        return 0
    written = install(args.gimp, dest)
    main_file = written[0]
    print(f"installed the GIMP {args.gimp} plug-in: {main_file}")
    print("restart GIMP; the entry is Filters > Enhance > Restore Old Photo...")
    if not args.dest:
        for note in sandboxed_gimp_notes(args.gimp):
            print("note: " + note)
    if not args.no_check:
        ok, note = dependency_report(args.gimp, args.python)
        print(("ok: " if ok else "ACTION NEEDED: ") + note)
    print("the plug-in talks to the restoration server: start it with: python -m server "
          "(with the Python in which this project is installed)")
    return 0
