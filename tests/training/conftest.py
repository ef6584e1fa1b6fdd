import pytest

from training.config import preset


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    # other engineers run tests at the same time on 2 cores
    yield


@pytest.fixture
def smoke(tmp_path):
    """The smoke preset writing into a temporary run folder and an empty cache."""
    cfg = preset("smoke")
    cfg.train.run_dir = str(tmp_path / "run")
    cfg.data.cache_dir = str(tmp_path / "cache")
    return cfg
