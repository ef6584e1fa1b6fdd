import subprocess
import zipfile

import numpy as np
import pytest
from PIL import Image

from training.config import DataConfig
from training.data import sources
from training.data.dataset import synthetic_photo


def _photos(folder, n=2, size=96):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(synthetic_photo(np.random.default_rng(i), size)).save(folder / f"p{i}.png")
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(folder / "flat.png")
    return folder


def test_clean_dirs_build_crops_flat_ones_dropped_idempotent(tmp_path):
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), clean_dirs=[str(_photos(tmp_path / "mine"))],
                     sources=[], crop=32, short_side_min=64, short_side_max=80, crops_per_photo=4)
    counts = sources.prepare_data(cfg, seed=0, report=lambda m: None)
    files = sorted(sources.crops_dir(cfg).glob("*.png"))
    assert counts["crops"] == len(files) > 0
    assert not [f for f in files if f.name.startswith("flat")]
    assert all(Image.open(f).size == (32, 32) for f in files)
    stamp = {f: f.stat().st_mtime_ns for f in files}
    sources.prepare_data(cfg, seed=0, report=lambda m: None)          # a re-run keeps everything
    assert {f: f.stat().st_mtime_ns for f in sorted(sources.crops_dir(cfg).glob("*.png"))} == stamp


def test_no_source_and_no_folder_is_a_clear_error(tmp_path):
    cfg = DataConfig(cache_dir=str(tmp_path), sources=[])
    with pytest.raises(sources.SourceUnavailable, match="no training photos"):
        sources.prepare_data(cfg, report=lambda m: None)


def test_unreachable_package_is_reported_and_skipped(tmp_path, monkeypatch):
    def failing_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package")
    monkeypatch.setattr(sources.subprocess, "run", failing_run)
    monkeypatch.setattr(sources.shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(sources.SourceUnavailable, match="apt-get download failed"):
        sources.fetch_deb("no-such-package", tmp_path)
    msgs = []
    assert sources.collect_train_photos(tmp_path, msgs.append) == 0
    assert len([m for m in msgs if m.startswith("skipped")]) == len(sources.TRAIN_PHOTOS)


def test_archive_members_and_eval_conversion(tmp_path, monkeypatch):
    buf = tmp_path / "pkg.whl"
    im = tmp_path / "a.png"
    Image.fromarray(synthetic_photo(np.random.default_rng(0), 16)).save(im)
    with zipfile.ZipFile(buf, "w") as z:
        z.write(im, "skimage/data/astronaut.png")
        z.write(im, "skimage/data/other.png")
    got = sources.archive_members(buf, ("skimage/data/astronaut.*",))
    assert [n for n, _ in got] == ["skimage/data/astronaut.png"]


def test_real_dirs_feed_domain_r(tmp_path):
    from training.config import preset
    from training.data.dataset import TrainingSamples
    cfg = preset("smoke")
    cfg.data.cache_dir = str(tmp_path / "cache")
    cfg.data.real_dirs = [str(_photos(tmp_path / "old", n=1, size=50))]
    s = TrainingSamples(cfg, defects=False, with_real=True)[(0, 0)]
    assert s["real"].shape == (3, cfg.data.crop, cfg.data.crop)
    assert s["real"].min() >= -1 and s["real"].max() <= 1


def _utf16_name(text):
    return len(text).to_bytes(2, "big") + (0).to_bytes(4, "big") + text.encode("utf-16-be")


def test_qt_rcc_reader_finds_files_zlib_included():
    import struct
    import zlib
    names = _utf16_name("dir") + b""
    off_file_a = len(names)
    names += _utf16_name("a.bin")
    off_file_b = len(names)
    names += _utf16_name("b.bin")
    payload_a = b"plain-bytes"
    payload_b = b"zz" * 50
    comp = len(payload_b).to_bytes(4, "big") + zlib.compress(payload_b)
    data = len(payload_a).to_bytes(4, "big") + payload_a
    off_b = len(data)
    data += len(comp).to_bytes(4, "big") + comp

    def entry(name_off, flags, a, b):
        return struct.pack(">IH", name_off, flags) + struct.pack(">II", a, b) + bytes(8)
    def file_entry(name_off, flags, data_off):
        return struct.pack(">IH", name_off, flags) + bytes(4) + struct.pack(">I", data_off) + bytes(8)
    tree = entry(0, 2, 1, 1) + entry(0, 2, 2, 2) + file_entry(off_file_a, 0, 0) + file_entry(off_file_b, 1, off_b)
    header_len = 24
    tree_off, data_off = header_len, header_len + len(tree)
    names_off = data_off + len(data)
    blob = b"qres" + struct.pack(">5I", 3, tree_off, data_off, names_off, 0) + tree + data + names
    files = dict(sources.read_rcc(blob))
    assert files == {"dir/a.bin": payload_a, "dir/b.bin": payload_b}
