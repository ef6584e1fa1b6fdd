"""The training loop's scalar log."""
import csv

from training.logger import ScalarLog


def test_scalar_log_widens_its_header_for_a_new_term(tmp_path):
    """A resumed run that adds a loss term still logs it; older rows stay, blank there."""
    ScalarLog(tmp_path).write(1, {"lat_l1": 0.5})
    log = ScalarLog(tmp_path)             # as after a resume
    log.write(2, {"lat_l1": 0.4, "grad_l1": 0.1})
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["step"] for r in rows] == ["1", "2"]
    assert rows[0]["grad_l1"] == "" and float(rows[1]["grad_l1"]) == 0.1
