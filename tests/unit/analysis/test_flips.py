"""Prediction flips between two stages and their per-class tables."""

import csv

import numpy as np

from axcnn.analysis.flips import flip_kinds, flip_table, write_flip_csv, write_predictions_csv


def test_flip_kinds_and_table(tmp_path):
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pa = np.array([0, 0, 1, 0, 1, 2, 2])   # right right right wrong wrong right right
    pb = np.array([0, 1, 1, 1, 0, 2, 0])   # right wrong right right wrong right wrong
    kinds = flip_kinds(y, pa, pb)
    assert list(kinds) == ["same", "right_to_wrong", "same", "wrong_to_right", "wrong_changed", "same",
                           "right_to_wrong"]
    t = flip_table(y, pa, pb, ["cat", "dog", "eel"], "exact", "approx")
    assert t["counts"] == {"right_to_wrong": 2, "wrong_to_right": 1, "wrong_changed": 1, "same": 3}
    assert sum(t["counts"].values()) == len(y)
    rows = {r["class"]: r for r in t["per_class"]}
    assert rows[0]["right_to_wrong"] == 1 and rows[0]["correct_a"] == 2 and rows[0]["correct_b"] == 1
    assert rows[1]["wrong_to_right"] == 1 and rows[2]["wrong_changed"] == 1
    assert rows[2]["name"] == "eel" and abs(rows[2]["accuracy_a"] - 200 / 3) < 1e-9
    assert t["broken_to"] == {"0->1": 1, "2->0": 1}
    assert abs(t["accuracy_a"] - 500 / 7) < 1e-9
    path = write_flip_csv(t, tmp_path / "f.csv")
    lines = list(csv.reader(open(path)))
    assert lines[0][:5] == ["class", "name", "n", "correct_exact", "correct_approx"]
    assert len(lines) == 4
    p = write_predictions_csv(tmp_path / "p.csv", np.array([10, 11]), y[:2], {"exact": pa[:2], "approx": pb[:2]})
    assert list(csv.reader(open(p)))[2] == ["1", "11", "0", "0", "1"]
