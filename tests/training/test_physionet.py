"""Reading challenge files: columns by header name, labs never kept, missing data is NaN."""

from __future__ import annotations

import numpy as np
import pytest

from vitalstream.training.physionet import (
    COL,
    SAMPLE_DIR,
    DataMissing,
    load_set_a,
    parse_psv,
    read_psv_dir,
)


def test_columns_are_found_by_name_whatever_their_order_and_labs_are_dropped():
    text = b"Lactate|SepsisLabel|HR|ICULOS\nNaN|0|88|1\n4.1|1|NaN|2\n"
    table = parse_psv(text)
    assert table[:, COL["HR"]].tolist()[0] == 88.0
    assert np.isnan(table[1, COL["HR"]])
    assert table[:, COL["SepsisLabel"]].tolist() == [0.0, 1.0]
    assert np.isnan(table[:, COL["Temp"]]).all()  # absent column: missing, not zero


def test_a_file_without_labels_reads_with_nan_labels_and_an_hourly_clock():
    table = parse_psv(b"HR|O2Sat\n80|97\n82|96\n")
    assert np.isnan(table[:, COL["SepsisLabel"]]).all()
    assert table[:, COL["ICULOS"]].tolist() == [1.0, 2.0]


def test_a_ragged_file_is_refused():
    with pytest.raises(ValueError):
        parse_psv(b"HR|O2Sat\n80|97\n82\n")


def test_the_shipped_sample_has_septic_and_non_septic_stays():
    cohort = read_psv_dir(SAMPLE_DIR)
    labels = cohort.column("SepsisLabel")
    septic = [labels[a:b].any() for a, b in zip(cohort.offsets[:-1], cohort.offsets[1:], strict=True)]
    assert cohort.n_stays == 40 and 0 < sum(septic) < 40
    assert cohort.has_labels()


def test_missing_data_says_where_to_get_it(tmp_path):
    with pytest.raises(DataMissing, match="physionet.org"):
        load_set_a(tmp_path)
