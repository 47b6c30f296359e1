"""The adding task generator (FW-ADD, urnn's adding_problem) and the adding experiment (TINY)."""
import json

import numpy as np
import pytest

from manualgrad import backend
from manualgrad.data.adding import TRIVIAL_MSE, adding_task
from manualgrad.experiments import adding, record


@pytest.mark.parametrize("T", [2, 7, 10, 51])
def test_adding_task_markers_halves_and_targets(T):
    n = 400
    u, y = adding_task(n, T, seed=3)
    assert u.shape == (T, n, 2) and y.shape == (n, 1)
    assert u.dtype == backend.get_dtype() and y.dtype == backend.get_dtype()
    values, marks = u[:, :, 0], u[:, :, 1]
    assert np.all((values >= 0) & (values < 1))
    assert set(np.unique(backend.to_numpy(marks))) <= {0.0, 1.0}
    assert np.all(marks.sum(axis=0) == 2)                      # exactly two markers
    H = T // 2
    assert np.all(marks[:H].sum(axis=0) == 1)                  # one in the first half
    assert np.all(marks[H:2 * H].sum(axis=0) == 1)             # one in the second half
    if T % 2:
        assert not np.any(marks[-1])                           # odd T: the last step unmarked
    assert np.allclose(y[:, 0], (values * marks).sum(axis=0), rtol=0, atol=1e-15)
    assert np.all((y > 0) & (y < 2))


def test_adding_task_is_seeded_uniform_and_the_trivial_mse_is_one_sixth():
    u1, y1 = adding_task(20000, 20, seed=0)
    u2, y2 = adding_task(20000, 20, seed=0)
    assert np.array_equal(u1, u2) and np.array_equal(y1, y2)
    assert not np.array_equal(adding_task(50, 20, seed=1)[0], u1[:, :50])
    assert abs(float(u1[:, :, 0].mean()) - 0.5) < 0.005
    pos = np.argmax(u1[:10, :, 1], axis=0)                     # first marker: uniform on 0..9
    assert np.all(np.bincount(pos, minlength=10) > 1700)
    assert float(((y1 - 1.0) ** 2).mean()) == pytest.approx(TRIVIAL_MSE, rel=0.03)
    assert TRIVIAL_MSE == pytest.approx(0.1667, abs=1e-4)


def test_adding_task_errors():
    with pytest.raises(ValueError, match="T must be >= 2"):
        adding_task(10, 1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        adding_task(0, 10)
    with pytest.raises(TypeError, match="T must be an integer"):
        adding_task(10, 10.5)


def test_experiment_tiny_writes_results_and_figure(tmp_path):
    rec = adding.run(verbose=False, out=str(tmp_path), progress=False, optimizer="all",
                     **adding.TINY)
    assert (tmp_path / "results.json").is_file() and (tmp_path / "test_mse.png").is_file()
    assert (tmp_path / "history.csv").is_file()
    back = record.load(tmp_path)
    assert back["experiment"] == "adding" and back["figures"] == ["test_mse.png"]
    assert set(back["runs"]) == set(adding.ALL) == {"fw", "sgd", "sgd_clip", "adam", "tbptt"}
    n_it = -(-adding.TINY["n_train"] // adding.TINY["batch_size"])
    for name, run in back["runs"].items():
        rows = run["epochs"]
        assert [r["epoch"] for r in rows] == list(range(adding.TINY["epochs"] + 1))
        assert [r["iteration"] for r in rows] == [e * n_it for e in range(len(rows))]
        assert all(np.isfinite(r["test_mse"]) for r in rows)
        assert back["summary"][name]["test_mse"] == rows[-1]["test_mse"]
    # every method starts from the same weights
    assert len({run["epochs"][0]["test_mse"] for run in back["runs"].values()}) == 1
    assert all("clip_fired" in r for r in back["runs"]["sgd_clip"]["epochs"][1:])
    assert all("clip_fired" not in r for r in back["runs"]["sgd"]["epochs"][1:])
    fw_rows = back["runs"]["fw"]["epochs"][1:]
    assert all("fw_angle_mean" in r and r["fw_outer_steps"] == n_it // adding.TINY["fw_K"]
               for r in fw_rows)
    assert "settings" in back and "out" not in back["settings"]
    json.dumps(back)


def test_experiment_settings_and_quick(tmp_path):
    s = adding.check_settings(T=40)
    assert s["tbptt_k1"] == 10 and s["tbptt_k2"] == 10 and s["fw_eta"] == s["lr_adam"]
    assert adding.check_settings(T=50)["tbptt_k1"] == 13          # ceil(T / 4)
    assert adding.check_settings(fw_outer="sgd")["fw_eta"] == 1.0
    for bad, err in ((dict(optimizer="rmsprop"), ValueError), (dict(T=1), ValueError),
                     (dict(fw_p=0.5), ValueError), (dict(fw_delta=0.0), ValueError),
                     (dict(fw_K=0), ValueError), (dict(tbptt_k1=200), ValueError),
                     (dict(tbptt_k1=10, tbptt_k2=5), ValueError), (dict(colour=1), TypeError),
                     (dict(fw_minibatch="all"), ValueError)):
        with pytest.raises(err):
            adding.check_settings(**bad)
    rec = adding.run(verbose=False, quick=True, out=str(tmp_path / "q"), progress=False,
                     **dict(adding.TINY, T=adding.DEFAULTS["T"], epochs=adding.DEFAULTS["epochs"],
                            optimizer="tbptt"))
    assert rec["settings"]["T"] == adding.QUICK["T"]                     # quick fills defaults
    assert rec["settings"]["epochs"] == adding.QUICK["epochs"]
    assert rec["settings"]["hidden"] == adding.TINY["hidden"]            # explicit values win
    import argparse
    p = argparse.ArgumentParser()
    adding.add_arguments(p)
    ns = vars(p.parse_args(["--optimizer", "tbptt_fw", "--fw-p", "inf", "--fw-per-tensor",
                            "false", "--quick"]))
    assert ns["fw_p"] == float("inf") and ns["fw_per_tensor"] is False and ns["quick"]
    # the one FW spelling of every FW experiment; --fw-per-tensor BOOL (the old one) still works
    assert vars(p.parse_args(["--fw-whole-vector"]))["fw_per_tensor"] is False
    assert vars(p.parse_args([]))["fw_per_tensor"] is True
    assert set(ns) - {"quick"} == set(adding.DEFAULTS)
    ns.update(adding.TINY, progress=False, out=str(tmp_path))
    rec = adding.run(verbose=False, **ns)
    assert list(rec["runs"]) == ["tbptt_fw"]
