"""``python -m training average``: the mean of helper-network weight files of one kind."""

from pathlib import Path

import pytest
import torch

from oldphoto_model.archs.detector import DetectorConfig, ScratchDetector
from oldphoto_model.archs.fill import FillConfig, FillNet
from oldphoto_model.detect import load_detector, model_threshold, save_detector
from oldphoto_model.errors import WeightsError
from oldphoto_model.learned_fill import FILL_FILE
from training.__main__ import main
from training.average import average_weight_files


def _detector(seed: int, width: int = 8) -> ScratchDetector:
    torch.manual_seed(seed)
    net = ScratchDetector(DetectorConfig(width=width, levels=2))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    return net


def test_average_of_detectors_is_the_mean_of_their_weights(tmp_path):
    nets = [_detector(s) for s in (1, 2, 3)]
    paths = [save_detector(n, tmp_path / f"d{i}.pt", {"threshold": 0.9, "steps": 10 * i})
             for i, n in enumerate(nets)]
    out = average_weight_files(paths, tmp_path / "mean.pt", {"threshold": 0.95})
    mean = load_detector(out)
    for k, v in mean.state_dict().items():
        want = sum(n.state_dict()[k] for n in nets) / 3
        assert torch.allclose(v, want, atol=1e-6), k
    meta = mean.weights_info.metadata
    assert model_threshold(mean) == 0.95 and meta["steps"] == 0            # the first file's, updated
    assert [Path(a["file"]).name for a in meta["averaged_from"]] == ["d0.pt", "d1.pt", "d2.pt"]
    assert [a["metadata"]["steps"] for a in meta["averaged_from"]] == [0, 10, 20]
    assert len({a["sha256"] for a in meta["averaged_from"]}) == 3


def test_average_of_fill_files_and_the_command(tmp_path):
    torch.manual_seed(0)
    nets = [FillNet(FillConfig(width=8, levels=2)) for _ in range(2)]
    paths = [str(FILL_FILE.save(n, tmp_path / f"f{i}.pt")) for i, n in enumerate(nets)]
    assert main(["average", "--out", str(tmp_path / "mean.pt"), *paths]) == 0
    mean = FILL_FILE.load(tmp_path / "mean.pt")
    k = next(iter(mean.state_dict()))
    assert torch.allclose(mean.state_dict()[k], (nets[0].state_dict()[k] + nets[1].state_dict()[k]) / 2)
    d = [str(save_detector(_detector(s), tmp_path / f"d{s}.pt")) for s in (1, 2)]
    assert main(["average", "--out", str(tmp_path / "dm.pt"), "--threshold", "0.97", *d]) == 0
    assert model_threshold(load_detector(tmp_path / "dm.pt")) == 0.97


def test_average_refuses_mismatches(tmp_path):
    a = save_detector(_detector(1), tmp_path / "a.pt")
    wide = save_detector(_detector(2, width=12), tmp_path / "wide.pt")
    fill = FILL_FILE.save(FillNet(FillConfig(width=8, levels=2)), tmp_path / "fill.pt")
    torch.save({"not": "a weight file"}, tmp_path / "junk.pt")
    with pytest.raises(ValueError):
        average_weight_files([a], tmp_path / "o.pt")
    for other in (wide, fill, tmp_path / "junk.pt"):
        with pytest.raises(WeightsError) as e:
            average_weight_files([a, other], tmp_path / "o.pt")
        assert other.name in str(e.value)
    with pytest.raises(WeightsError):
        average_weight_files([tmp_path / "junk.pt", a], tmp_path / "o.pt")
    torch.save({"format": "oldphoto-weights", "version": 1}, tmp_path / "model.pt")
    with pytest.raises(WeightsError, match="model.pt.*not a helper-network"):
        average_weight_files([tmp_path / "model.pt", a], tmp_path / "o.pt")
    assert not (tmp_path / "o.pt").exists()
