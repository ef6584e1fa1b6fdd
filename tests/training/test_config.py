import json
import subprocess
import sys

import pytest

from training.__main__ import build_parser
from training.config import Config, apply_overrides, from_dict, preset, resolve


def test_presets_build_and_round_trip():
    for name in ("default", "small", "smoke"):
        cfg = preset(name)
        again = from_dict(Config, json.loads(cfg.to_json()))
        assert again == cfg


def test_default_preset_has_the_papers_numbers():
    c = preset("default")
    assert (c.optim.lr, c.optim.beta1, c.optim.lr_mapping_g, c.optim.lr_mapping_d) == (2e-4, 0.5, 1e-4, 4e-4)
    assert (c.loss.latent_l1, c.loss.feat_match, c.loss.perceptual) == (60, 10, 10)
    assert c.data.crop == 256 and c.model.mapping.width == 512


def test_cli_flags_are_generated_and_override():
    args = build_parser().parse_args(["vae-b", "--preset", "smoke", "--train.seed", "7",
                                      "--model.vae.channels", "16", "--model.mapping.latent_channels", "16",
                                      "--degrade.jpeg_quality", "50", "60", "--no-train.progress"])
    cfg = resolve(args)
    assert cfg.train.seed == 7 and cfg.model.vae.channels == 16 and cfg.degrade.jpeg_quality == [50, 60]
    assert cfg.train.progress is False and cfg.preset == "smoke"
    assert cfg.vae_a.steps == preset("smoke").vae_a.steps     # untouched fields keep the preset


def test_bad_override_is_refused():
    with pytest.raises(ValueError):
        apply_overrides(preset("smoke"), {"train.nope": 1})
    with pytest.raises(ValueError):   # latent width mismatch between VAE and mapping
        apply_overrides(preset("smoke"), {"model.vae.channels": 32})


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("prepare-data", "show-degradations", "vae-a", "vae-b", "mapping", "export", "evaluate"):
        assert cmd in out


def test_resolved_config_file_rebuilds_the_run(tmp_path, smoke):
    from training.config import save_config
    smoke.train.seed = 99
    path = save_config(smoke, tmp_path)
    args = build_parser().parse_args(["export", "--config", str(path)])
    assert resolve(args) == smoke
