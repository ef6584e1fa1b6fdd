"""Real old photos (domain R) for prepare-data: manifest, local folder, downloads from a
real HTTP server on 127.0.0.1 (no other network), hash checks, and VAE_A's choice."""
from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from training.config import DataConfig, preset
from training.data import real_photos as rp
from training.data import sources
from training.data.dataset import TrainingSamples, synthetic_photo

REPO, COMMIT = "someone/old-photos", "0123456789abcdef0123456789abcdef01234567"
HEADER = "\t".join(rp.COLUMNS)


def _png(seed: int, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(synthetic_photo(np.random.default_rng(seed), size)).save(buf, "PNG")
    return buf.getvalue()


class _Server:
    """A real http.server serving ``files`` (URL path -> bytes) on an ephemeral port, counting requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a) -> None:      # keep pytest output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def served(tmp_path):
    """Three PNGs under /<repo>/<commit>/<path> (one path with spaces and a comma, as in
    the shipped manifest) and a manifest naming them with their hashes."""
    paths = {"old_a.png": "test_images/old/a.png", "old_b.png": "test_images/old/b.png",
             "old c.png": "assets/test_images/Detroit, circa 1915.png"}
    blobs = {name: _png(i) for i, name in enumerate(paths)}
    files = {f"/{REPO}/{COMMIT}/{urllib.parse.quote(p)}": blobs[n] for n, p in paths.items()}
    server = _Server(files)
    rows = [HEADER] + [f"{n}\t{hashlib.sha256(blobs[n]).hexdigest()}\t{REPO}\t{COMMIT}\t{p}\tMIT"
                       for n, p in paths.items()]
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    yield server, manifest, blobs
    server.close()


def _fetch(cache, manifest, msgs, **kw):
    return rp.fetch_real_photos(cache, manifest, report=msgs.append, timeout=5, **kw)


def test_downloads_land_with_the_right_hashes(tmp_path, served):
    server, manifest, blobs = served
    msgs: list[str] = []
    res = _fetch(tmp_path / "cache", manifest, msgs, base_url=server.base_url)
    assert (res.downloaded, res.cached, res.copied, res.failed) == (3, 0, 0, [])
    for name, blob in blobs.items():
        assert (tmp_path / "cache" / "real" / name).read_bytes() == blob
    assert sorted(p.name for p in res.files) == sorted(blobs)
    assert len(server.requests) == 3
    assert any("Detroit%2C%20circa%201915.png" in r for r in server.requests)   # the path was URL-encoded
    assert not [p for p in (tmp_path / "cache" / "real").iterdir() if p.name.startswith(".")]  # no temp files


def test_wrong_hash_is_refused_reported_and_nothing_is_left(tmp_path, served):
    server, manifest, blobs = served
    good = hashlib.sha256(blobs["old_b.png"]).hexdigest()
    bad = "f" * 64
    manifest.write_text(manifest.read_text().replace(good, bad))
    msgs: list[str] = []
    res = _fetch(tmp_path / "cache", manifest, msgs, base_url=server.base_url)
    assert res.downloaded == 2 and len(res.failed) == 1                 # the others went on
    line = [m for m in msgs if m.startswith("skipped:")]
    assert len(line) == 1 and "old_b.png" in line[0] and good in line[0] and bad in line[0]
    assert sorted(p.name for p in (tmp_path / "cache" / "real").iterdir()) == ["old c.png", "old_a.png"]


def test_files_already_in_the_cache_are_not_downloaded_again(tmp_path, served):
    server, manifest, blobs = served
    cache = tmp_path / "cache"
    _fetch(cache, manifest, [], base_url=server.base_url)
    assert len(server.requests) == 3
    stamp = {p.name: p.stat().st_mtime_ns for p in (cache / "real").iterdir()}
    res = _fetch(cache, manifest, [], base_url=server.base_url)
    assert len(server.requests) == 3 and (res.cached, res.downloaded) == (3, 0)
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "real").iterdir()} == stamp
    # a damaged cached copy is replaced by a fresh download (and only that one is fetched)
    (cache / "real" / "old_a.png").write_bytes(b"garbage")
    msgs: list[str] = []
    res = _fetch(cache, manifest, msgs, base_url=server.base_url)
    assert len(server.requests) == 4 and (res.cached, res.downloaded) == (2, 1)
    assert (cache / "real" / "old_a.png").read_bytes() == blobs["old_a.png"]
    assert any("old_a.png" in m and "cached copy" in m for m in msgs)


def test_local_folder_is_used_without_any_server(tmp_path, served):
    _, manifest, blobs = served
    local = tmp_path / "local"
    local.mkdir()
    for name, blob in blobs.items():
        (local / name).write_bytes(blob)
    closed = _closed_port_url()
    msgs: list[str] = []
    res = _fetch(tmp_path / "cache", manifest, msgs, source_dir=local, base_url=closed)
    assert (res.copied, res.downloaded, res.failed) == (3, 0, [])
    for name, blob in blobs.items():
        assert (tmp_path / "cache" / "real" / name).read_bytes() == blob
    # a local copy with the wrong bytes is not used; it falls back to the web
    (local / "old_a.png").write_bytes(b"not the photo")
    (tmp_path / "cache" / "real" / "old_a.png").unlink()
    res = _fetch(tmp_path / "cache", manifest, msgs, source_dir=local, base_url=closed)
    assert res.cached == 2 and len(res.failed) == 1 and "old_a.png" in res.failed[0]
    assert any("local copy" in m and "old_a.png" in m for m in msgs)
    assert not (tmp_path / "cache" / "real" / "old_a.png").exists()


def _closed_port_url() -> str:
    """A loopback address nothing listens on (a port just released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_server_down_is_reported_fast(tmp_path, served):
    _, manifest, _ = served
    msgs: list[str] = []
    t = time.monotonic()
    res = _fetch(tmp_path / "cache", manifest, msgs, base_url=_closed_port_url())
    assert time.monotonic() - t < 5
    assert res.files == [] and len(res.failed) == 3
    assert all(m.startswith("skipped: real photo ") and "cannot connect" in m for m in msgs)


def test_silent_server_times_out(tmp_path, served):
    """A server that accepts and never answers: the socket timeout ends it."""
    _, manifest, _ = served
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    try:
        got: list[rp.RealPhotosResult] = []
        url = f"http://127.0.0.1:{lst.getsockname()[1]}"
        # in a thread, so a missing timeout fails this test instead of hanging the suite
        t = threading.Thread(target=lambda: got.append(rp.fetch_real_photos(
            tmp_path / "cache", manifest, base_url=url, timeout=0.3, report=lambda m: None)), daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), "a silent server kept the download waiting: no timeout"
        assert len(got[0].failed) == 3 and all("timed out" in m for m in got[0].failed)
    finally:
        lst.close()


def test_http_error_is_reported_and_the_others_go_on(tmp_path, served):
    server, manifest, _ = served
    server.files.pop(next(k for k in server.files if k.endswith("old/a.png")))
    res = _fetch(tmp_path / "cache", manifest, [], base_url=server.base_url)
    assert sorted(p.name for p in res.files) == ["old c.png", "old_b.png"]
    assert len(res.failed) == 1 and "old_a.png" in res.failed[0] and "HTTP 404" in res.failed[0]


def test_oversized_download_is_cut_off_and_not_kept(tmp_path, served):
    server, manifest, blobs = served
    assert min(len(b) for b in blobs.values()) > 200
    res = _fetch(tmp_path / "cache", manifest, [], base_url=server.base_url, max_bytes=200)
    assert res.files == [] and len(res.failed) == 3 and all("more than 200 bytes" in m for m in res.failed)
    assert list((tmp_path / "cache" / "real").iterdir()) == []


@pytest.mark.parametrize("bad, match", [
    ("file\tsha256\tsource_repo\n", "lacks the column"),
    (HEADER + "\n../evil.png\t" + "0" * 64 + f"\t{REPO}\t{COMMIT}\ta.png\tMIT\n", "plain name"),
    (HEADER + "\na.png\tABC\t" + f"{REPO}\t{COMMIT}\ta.png\tMIT\n", "sha256"),
    (HEADER + "\na.png\t" + "0" * 64 + f"\tnot a repo\t{COMMIT}\ta.png\tMIT\n", "OWNER/NAME"),
    (HEADER + "\na.png\t" + "0" * 64 + f"\t{REPO}\tmain\ta.png\tMIT\n", "commit"),
    (HEADER + "\na.png\t" + "0" * 64 + f"\t{REPO}\t{COMMIT}\t../../x.png\tMIT\n", "relative"),
    (HEADER + "\na.png\t" + "0" * 64 + f"\t{REPO}\t{COMMIT}\n", "fields"),
    ("", "empty"),
], ids=["columns", "file-path", "sha256", "repo", "commit", "path", "short-row", "empty"])
def test_malformed_manifest_is_a_clear_error_before_any_fetch(tmp_path, bad, match):
    m = tmp_path / "m.tsv"
    m.write_text(bad)
    with pytest.raises(rp.ManifestError, match=match):
        rp.fetch_real_photos(tmp_path / "cache", m, base_url=_closed_port_url(), report=lambda s: None)
    assert not (tmp_path / "cache").exists()


def test_shipped_manifest_parses_and_builds_raw_github_urls():
    entries = rp.read_manifest()
    assert len(entries) == 21 and len({e.file for e in entries}) == 21
    e = entries[0]
    assert e.url() == f"https://raw.githubusercontent.com/{e.source_repo}/{e.commit}/{e.path}"
    spaced = next(x for x in entries if " " in x.path)
    assert " " not in spaced.url() and "%20" in spaced.url()


def test_missing_real_source_dir_is_a_clear_error(tmp_path):
    cfg = DataConfig(cache_dir=str(tmp_path), real_source_dir=str(tmp_path / "nope"))
    with pytest.raises(NotADirectoryError, match="real_source_dir"):
        rp.source_dir_for(cfg)


def test_prepare_data_reports_real_photos_and_vae_a_uses_the_cache(tmp_path, served, monkeypatch):
    server, manifest, blobs = served
    photos = tmp_path / "mine"
    photos.mkdir()
    Image.fromarray(synthetic_photo(np.random.default_rng(5), 96)).save(photos / "p.png")
    # no ../shared/real_old here: everything comes from the loopback server
    monkeypatch.setattr(rp, "SHARED_REAL", tmp_path / "absent")
    monkeypatch.setattr(rp, "BASE_URL", server.base_url)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), clean_dirs=[str(photos)], sources=["real"],
                     real_manifest=str(manifest), crop=32, short_side_min=64, short_side_max=80, crops_per_photo=2)
    msgs: list[str] = []
    counts = sources.prepare_data(cfg, report=msgs.append)
    assert counts["real"] == 3
    assert any(m.startswith("real old photos: 3 of 3") and "3 downloaded" in m for m in msgs)

    run = preset("smoke")
    run.data = cfg
    dirs, line = rp.domain_r_source(run.data)
    assert dirs == [str(tmp_path / "cache" / "real")] and "3 real old photos" in line
    ds = TrainingSamples(run, defects=False, with_real=True)
    assert ds.real is not None and len(ds.real) == 3
    assert ds[(0, 0)]["real"].shape == (3, 32, 32)
    # --data.real_dirs wins; --data.synthetic runs ignore the cache (the stand-in)
    run.data.real_dirs = [str(photos)]
    assert rp.domain_r_source(run.data)[0] == [str(photos)]
    run.data.real_dirs, run.data.synthetic = [], True
    dirs, line = rp.domain_r_source(run.data)
    assert dirs == [] and "stand-in" in line
    assert TrainingSamples(run, defects=False, with_real=True).real is None


def test_default_local_source_is_shared_real_old_next_to_the_checkout(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "real_old"
    monkeypatch.setattr(rp, "SHARED_REAL", shared)
    assert rp.source_dir_for(DataConfig(cache_dir=str(tmp_path))) is None
    shared.mkdir(parents=True)
    assert rp.source_dir_for(DataConfig(cache_dir=str(tmp_path))) == shared
    assert rp.source_dir_for(DataConfig(cache_dir=str(tmp_path), real_source_dir=str(tmp_path))) == tmp_path
