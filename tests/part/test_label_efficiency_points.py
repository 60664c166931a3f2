"""Points of ``part-label-efficiency`` (``parse_point``) and its refusals before any work."""
import re

import pytest

from conftest import run_main
from part.errors import ConfigError
from part.evaluation.label_efficiency import parse_point
from part.label_efficiency import main as sweep_main

SUBJECTS = {"key": "data.finetune_subjects", "unit": "labelled subjects", "pool": 8, "all": 8}
FRACTION = {"key": "data.label_fraction", "unit": "label fraction", "pool": 1.0, "all": 1.0}


def test_points_in_subjects_and_fractions():
    assert parse_point("2", SUBJECTS) == ("2", 2) and parse_point("all", SUBJECTS) == ("all", 8)
    assert parse_point("8", SUBJECTS) == ("8", 8)
    assert parse_point("10%", FRACTION) == ("10%", pytest.approx(0.1))
    assert parse_point("0.01", FRACTION) == ("1%", 0.01) and parse_point("all", FRACTION) == ("all", 1.0)


@pytest.mark.parametrize("text,budget,message", [
    ("9", SUBJECTS, "'9' is outside (0, 8]: the data hold 8 labelled subjects"),
    ("0", SUBJECTS, "'0' is outside (0, 8]"),
    ("1.5", SUBJECTS, "'1.5' must be a whole number of labelled subjects"),
    ("150%", FRACTION, "'150%' is outside (0, 1.0]"),
    ("some", SUBJECTS, "'some' is not a number, a percentage or 'all'")])
def test_bad_points_are_refused_naming_them(text, budget, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_point(text, budget)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    res = run_main(sweep_main, [tmp_path, "--points", "1", "--out", tmp_path / "out"])
    assert res.returncode == 2
    assert f"'{tmp_path}' holds no config.yaml: it is not a run directory of part-train" in res.stderr
    assert not (tmp_path / "out").exists()
