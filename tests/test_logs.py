"""Workflow scripts' logging: a bad input ends the job with its one line, a defect with its traceback."""

import pytest

from lossbench.core.logs import log_to


def test_a_bad_input_is_one_line_in_the_log_and_on_exit(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit, match=r"^ValueError: /data/x\.h5: missing dataset 'kspace'$"):
        with log_to(log):
            raise ValueError("/data/x.h5: missing dataset 'kspace'")
    text = log.read_text()
    assert "job failed: /data/x.h5: missing dataset 'kspace'" in text and "Traceback" not in text


def test_a_defect_keeps_its_traceback(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(KeyError):
        with log_to(log):
            {}["missing"]
    assert "Traceback" in log.read_text()
