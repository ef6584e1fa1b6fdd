"""The ``tone`` stage: builds its bank once (chunks survive a restart), fits in the shared
loop, resumes bit-identically, and exports a file the product loads; its loss rewards
the right colour matrix."""

import numpy as np
import torch

from oldphoto_model.archs.tone import ToneEstimator
from oldphoto_model.tone import load_tone
from training.stages.tone import build_bank, export_tone, make_pair, tone_loss

from .resume import train_and_check_resume


def test_tone_stage_runs_resumes_and_exports(smoke, tmp_path):
    ckpt = train_and_check_resume(smoke, tmp_path, "tone", "tone")
    assert len(list((ckpt.parent / "bank").glob("chunk_*.pt"))) == 3      # 24 pairs in chunks of 10
    net = load_tone(export_tone(smoke))
    assert net.weights_info.metadata["steps"] == smoke.tone.steps
    # the normalisation of the features was set from the bank and travels with the weights
    assert not torch.equal(net.feature_std, torch.ones_like(net.feature_std))


def test_bank_chunks_are_kept_and_reproducible(smoke, tmp_path):
    folder = tmp_path / "bank"
    first = build_bank(smoke, folder)
    (folder / "chunk_0001.pt").unlink()           # a restart after a kill: only that chunk is made again
    again = build_bank(smoke, folder)
    for k in ("degraded", "clean"):
        assert first[k].shape == (smoke.tone.samples, 3, smoke.tone.thumb, smoke.tone.thumb)
        assert torch.equal(first[k], again[k])


def test_pairs_are_degraded_versions_of_the_same_view(smoke):
    from training.data.dataset import synthetic_photos
    photo = synthetic_photos(1, 96, 0)[0]
    diffs = []
    for seed in range(6):
        d, c = make_pair(photo, np.random.default_rng(seed), smoke, None)
        assert d.shape == c.shape == (3, smoke.tone.thumb, smoke.tone.thumb) and d.dtype == np.uint8
        diffs.append(np.abs(d.astype(int) - c.astype(int)).mean())
    assert max(diffs) > 1.0                      # the degradation shows in the thumbnails


def test_tone_loss_rewards_the_right_matrix():
    torch.manual_seed(0)
    clean = torch.rand(4, 3, 16, 16)
    faded = 0.1 + 0.7 * clean                    # lifted blacks, lost contrast

    class Fixed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.expand(len(x), 3, 4)
    right = torch.cat([torch.eye(3) / 0.7, torch.full((3, 1), -0.1 / 0.7)], 1)
    assert float(tone_loss(Fixed(right), faded, clean)) < 1e-10
    with torch.no_grad():
        assert float(tone_loss(ToneEstimator(), faded, clean)) > 1e-3     # untrained = identity
