import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oldphoto_model import Restorer, load_model
from training.config import preset
from training.dist import DistContext
from training.export import export
from training.stages import train_stage
from training.stages.loop import build_stage

ROOT = Path(__file__).resolve().parents[2]


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["modules"]


def test_pipeline_smoke_and_export_loads(smoke, tmp_path):
    for stage in ("vae-a", "vae-b", "mapping"):
        ckpt = train_stage(smoke, stage)
        assert ckpt.is_file()
        out = Path(smoke.train.run_dir) / stage
        assert (out / "config.json").is_file() and (out / "log.csv").is_file()
        assert list((out / "samples").glob("*.png"))
    path = export(smoke, tmp_path / "w.pt")
    model = load_model(path)                     # the server's loader
    assert model.config == smoke.model
    img = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    mask = np.zeros((40, 52), np.uint8)
    mask[5:9] = 255
    out = Restorer(model, "cpu", "fp32").restore(img, mask)
    assert out.shape == img.shape
    # the exported mapping is the trained one, not a fresh network
    trained = _weights(Path(smoke.train.run_dir) / "mapping" / "last.pt")["mapping"]
    for k, v in model.mapping.state_dict().items():
        torch.testing.assert_close(v, trained[k])


def test_evaluate_writes_table_and_grid(smoke, tmp_path):
    for stage in ("vae-a", "vae-b", "mapping"):
        train_stage(smoke, stage)
    export(smoke)
    from training.evaluate import evaluate
    rows = evaluate(smoke, out_dir=tmp_path / "eval")
    methods = {r["method"] for r in rows}
    assert {"degraded input", "model, whole photo", "model, only the selection changes",
            "model, whole photo, detected mask"} <= methods
    assert all(np.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 and r["sharpness"] > 0 for r in rows)
    # the selection mode leaves everything outside the mask as it came in
    sel = [r for r in rows if r["method"] == "model, only the selection changes"]
    assert all(np.isfinite(r["fill_delta"]) for r in sel)
    assert (tmp_path / "eval" / "grid.png").is_file() and (tmp_path / "eval" / "results.md").is_file()
    small = np.asarray(Image.open(tmp_path / "eval" / "grid_small.png"))
    c = min(smoke.eval.grid_crop, smoke.eval.max_side)
    assert small.shape[0] <= smoke.eval.grid_photos * (c + 2) + 2 + 64     # + the label strip
    from training.evaluate import real_dir
    if real_dir(smoke) is not None:
        for sheet in ("real_sheet.jpg", "real_detail.jpg"):
            assert (tmp_path / "eval" / sheet).is_file(), sheet


def test_detail_window_finds_the_texture():
    from training.evaluate import detail_window
    rng = np.random.default_rng(0)
    img = np.full((120, 200, 3), 128, np.uint8)
    img[70:100, 30:60] = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)    # the only fine detail
    y, x = detail_window(img, 30)
    assert (y, x) == (70, 30)
    img[10:20, 150:190] = np.where(np.arange(40) % 2, 0, 255)[None, :, None]   # a bar pattern: finer still
    y, x = detail_window(img, 24)
    assert 0 <= y <= 10 and 150 <= x <= 166
    assert detail_window(img[:10, :10], 64) == (0, 0)                          # smaller than the window


def test_crop_around_mask_stays_inside_and_centres():
    from training.evaluate import crop_around_mask
    m = np.zeros((100, 80), bool)
    m[90:95, 70:75] = True
    assert crop_around_mask(m, 40) == (60, 40, 40)          # pushed back inside
    m[:] = False
    m[40:50, 30:40] = True
    assert crop_around_mask(m, 20) == (34, 24, 20)          # centred on the mask
    assert crop_around_mask(np.zeros((10, 30), bool), 64) == (0, 10, 10)


def test_psnr_ssim_reference_values():
    from training.evaluate import psnr, ssim
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110                               # one error of 10 in 3072 values
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / (100 / 3072)))
    assert ssim(a, a) == pytest.approx(1.0)
    # constant images: only the luminance term, (2*100*155 + c1) / (100^2 + 155^2 + c1)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, 255 - a) == pytest.approx((2 * 100 * 155 + c1) / (100 ** 2 + 155 ** 2 + c1))
    t = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim(t, 255 - t) < 0
    m = np.zeros((32, 32), bool)
    m[0, 0] = True
    assert psnr(a, b, m) == pytest.approx(10 * np.log10(255 ** 2 / (100 / 3)))


@pytest.mark.parametrize("stage", ["vae-b", "mapping"])
def test_losses_go_down_on_one_fixed_batch(smoke, stage):
    torch.manual_seed(0)
    if stage == "mapping":
        for s in ("vae-a", "vae-b"):
            train_stage(smoke, s)
    smoke.loss.image_gan = 0.0          # the adversarial terms are not meant to decrease
    smoke.loss.feat_match = 0.0
    smoke.loss.latent_gan = 0.0
    smoke.vae_b.steps = smoke.mapping.steps = 10_000   # a constant learning rate
    smoke.optim.lr = smoke.optim.lr_mapping_g = 2e-3
    st = build_stage(smoke, DistContext(), stage, log=lambda m: None)
    from training.data.dataset import TrainingSamples
    ds = TrainingSamples(smoke, defects=stage == "mapping")
    batch = {k: torch.stack([ds[(0, j)][k] for j in range(2)]) for k in ("clean", "degraded", "mask")}
    key = "rec" if stage == "vae-b" else "lat_l1"
    first = [st.train_step(batch, None)[key] for _ in range(3)]
    for _ in range(40):
        last = st.train_step(batch, None)[key]
    assert last < 0.4 * first[0], (first, last)


@pytest.mark.parametrize("stage", ["vae-a", "mapping"])
def test_kill_and_resume_is_bit_exact(tmp_path, stage):
    def cfg(run):
        c = preset("smoke")
        c.train.run_dir = str(tmp_path / run)
        c.data.cache_dir = str(tmp_path / "cache")
        for sc in (c.vae_a, c.vae_b, c.mapping):
            sc.steps = 5
        c.train.ckpt_every = 100                       # only the end-of-run checkpoint
        return c
    if stage == "mapping":
        for run in ("full", "resumed"):
            train_stage(cfg(run), "vae-a")
            train_stage(cfg(run), "vae-b")
    full = train_stage(cfg("full"), stage)
    part = train_stage(cfg("resumed"), stage, stop_after=2)      # "killed" after step 2
    assert torch.load(part, weights_only=False)["step"] == 2
    resumed = train_stage(cfg("resumed"), stage)
    assert torch.load(resumed, weights_only=False)["step"] == 5
    a, b = _weights(full), _weights(resumed)
    for name in a:
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), f"{name}.{k}"


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from training import checkpoint
    p = tmp_path / "last.pt"
    p.write_bytes(b"old")
    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(OSError):
        checkpoint.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old" and list(tmp_path.iterdir()) == [p]


def test_vgg19_loads_a_torchvision_layout_state_dict(tmp_path):
    from training.archs import VGG19Features, load_vgg19
    ref = VGG19Features()
    sd = {f"features.{k.split('.', 1)[1]}": v for k, v in ref.state_dict().items()}
    # torchvision's full vgg19 also has the deeper convs and a classifier: both ignored
    sd["features.34.weight"] = torch.zeros(512, 512, 3, 3)
    sd["classifier.0.weight"] = torch.zeros(4096, 25088 // 64)
    torch.save(sd, tmp_path / "vgg19.pth")
    net = load_vgg19(tmp_path / "vgg19.pth")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for a, b in zip(net(x), ref(x)):
        torch.testing.assert_close(a, b)
    assert [f.shape[1] for f in net(x)] == [64, 128, 256, 512, 512]


@pytest.mark.slow
def test_torchrun_two_processes_gloo_identical_weights(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "training"]
    flags = ["--preset", "smoke", "--train.run_dir", str(run), "--data.cache_dir", str(tmp_path / "c"),
             "--train.backend", "gloo", "--train.device", "cpu"]
    for stage in ("vae-a", "vae-b", "mapping"):
        r = subprocess.run(base + [stage] + flags + ["--train.dump_rank_weights"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        dumps = sorted((run / stage).glob("rank*.pt"))
        assert len(dumps) == 2
        w0, w1 = (torch.load(p, weights_only=False) for p in dumps)
        for name in w0:
            for k in w0[name]:
                assert torch.equal(w0[name][k], w1[name][k]), f"{stage} {name}.{k}"


def test_bf16_autocast_and_channels_last_path_runs(smoke):
    """The GPU settings (bf16 autocast, channels_last) exercised on CPU: finite losses."""
    smoke.train.amp = "bf16"
    smoke.train.channels_last = "on"
    for stage in ("vae-a", "vae-b", "mapping"):
        train_stage(smoke, stage)
        import csv
        rows = list(csv.DictReader(open(Path(smoke.train.run_dir) / stage / "log.csv")))
        assert rows and all(np.isfinite(float(v)) for r in rows for v in r.values())


def test_default_command_runs_the_whole_pipeline(tmp_path):
    """``python -m training`` with no command: every stage, export (fp16) and evaluate."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "training", "--preset", "smoke", "--train.run_dir", str(run),
                        "--data.cache_dir", str(tmp_path / "c"), "--fp16"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("vae-a", "vae-b", "mapping"):
        assert (run / stage / "last.pt").is_file() and (run / stage / "config.json").is_file()
    payload = torch.load(run / "weights.pt", weights_only=True)
    assert payload["mapping"]["head.1.weight"].dtype == torch.float16
    assert (run / "eval" / "results.md").read_text().count("|") > 8


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """A real kill (SIGKILL while training), then the same command again."""
    import signal
    import time
    steps = 40
    flags = ["vae-b", "--preset", "smoke", "--data.cache_dir", str(tmp_path / "c"),
             f"--vae_b.steps={steps}", "--train.ckpt_every=1", "--train.log_every=1000",
             "--train.sample_every=1000"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "training", *flags, "--train.run_dir", str(killed)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "vae-b" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    k = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < k < steps, "the run was not interrupted"
    r = subprocess.run([sys.executable, "-m", "training", *flags, "--train.run_dir", str(killed)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"resumed from {ckpt} at step" in r.stdout, r.stderr[-2000:]
    cfg = preset("smoke")
    cfg.train.run_dir, cfg.data.cache_dir = str(tmp_path / "full"), str(tmp_path / "c")
    cfg.vae_b.steps, cfg.train.ckpt_every = steps, 1000
    full = train_stage(cfg, "vae-b")
    a, b = _weights(full), _weights(ckpt)
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key} (killed at step {k})"
