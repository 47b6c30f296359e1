"""The FW-HAR experiment (experiments/har.py; FW Sec. V, Table III) on a tiny fixture written in
tmp_path in the UCI HAR layout (the writer of tests/test_har.py)."""
import argparse
import json

import numpy as np
import pytest

from manualgrad import backend
from manualgrad.data.har import har_sequences
from manualgrad.experiments import har, methods, record
from manualgrad.experiments.options import apply_quick
from test_har import _write_split

T = 8
TINY = dict(har.TINY, synthetic=False, tbptt_k1=2)
"""har.TINY on the fixture below instead of the synthetic stand-in."""


@pytest.fixture
def har_folder(tmp_path):
    """24 training and 12 test windows of T = 8 steps x 9 channels, labels 1..6 in turn; the
    HAR-2 class (label mod 2) shifts the channel means, so there is something to learn."""
    rng = np.random.default_rng(0)
    root = tmp_path / "UCI HAR Dataset"
    for split, n in (("train", 24), ("test", 12)):
        y = np.arange(n) % 6 + 1
        u = rng.standard_normal((n, T, 9)) + 0.8 * (y % 2)[:, None, None]
        _write_split(root, split, u, y)
    return tmp_path


def test_tiny_run_every_method_writes_results_and_figures(har_folder, tmp_path):
    out = tmp_path / "out"
    rec = har.run(verbose=False, progress=False, data=str(har_folder), out=str(out), **TINY)
    for f in ("results.json", "history.csv", "curves.png", "fw_angles.png"):
        assert (out / f).is_file(), f
    back = record.load(out)
    assert back["experiment"] == "har" and back["figures"] == ["curves.png", "fw_angles.png"]
    assert list(back["runs"]) == ["har2/%s" % m for m in har.METHODS]
    assert back["data"]["T"] == T and back["data"]["n_train"] == 24
    assert back["data"]["noise_variance"] is None and back["settings"]["tbptt_k2"] == 2
    n_it = -(-24 // TINY["batch_size"])
    for label, run in back["runs"].items():
        rows = run["epochs"]
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        assert all(0 <= r["test_acc"] <= 1 and np.isfinite(r["test_F"]) for r in rows)
        spec = methods.METHOD_SPECS[run["method"]]
        if spec["opt"] == "fw" and spec["K"] in (1, "fw_K"):
            assert [r["fw_outer_steps"] for r in rows[1:]] == [n_it, n_it]
        assert ("clip_fired" in rows[1]) == (run["method"] == "sgd_clip")
    assert [r["fw_outer_steps"] for r in back["runs"]["har2/fw10"]["epochs"][1:]] == [0, 0]
    # the RNN methods share their initial weights, the LSTM methods theirs
    first = {m: back["runs"]["har2/" + m]["epochs"][0]["test_F"] for m in har.METHODS}
    assert len({first[m] for m in har.METHODS if not m.startswith("lstm")}) == 1
    assert first["lstm_adam"] == first["lstm_fw"] != first["adam"]
    json.dumps(back)
    assert rec["summary"].keys() == back["runs"].keys()


def test_noisy_har2_and_heads(har_folder, tmp_path):
    clean = har.run(verbose=False, progress=False, data=str(har_folder), out=str(tmp_path / "c"),
                    optimizer="adam", **TINY)
    noisy = har.run(verbose=False, progress=False, data=str(har_folder), out=str(tmp_path / "n"),
                    optimizer="adam", noisy=True, **TINY)
    assert list(noisy["runs"]) == ["noisy_har2/adam"]
    assert noisy["data"]["noise_variance"] == 2.0 and noisy["settings"]["noisy"] is True
    (u, _), _ = har.make_data(har.check_settings(data=str(har_folder), **TINY))[0]
    (un, _), _ = har.make_data(har.check_settings(data=str(har_folder), noisy=True, **TINY))[0]
    d = backend.to_numpy(un) - backend.to_numpy(u)       # the added noise, N(0, 2)
    assert abs(d.var() - 2.0) < 0.3 and abs(d.mean()) < 0.15
    assert clean["runs"]["har2/adam"]["epochs"][0]["test_F"] != \
        noisy["runs"]["noisy_har2/adam"]["epochs"][0]["test_F"]
    for head in ("bce", "cross_entropy"):
        rec = har.run(verbose=False, progress=False, data=str(har_folder), head=head,
                      out=str(tmp_path / head), optimizer="fw1,lstm_fw", **TINY)
        assert all(np.isfinite(r["test_F"]) for run in rec["runs"].values()
                   for r in run["epochs"])
    (_, y), _ = har.make_data(har.check_settings(data=str(har_folder), head="cross_entropy",
                                               optimizer="adam"))[0]
    assert y.dtype == np.int64 and y.shape == (24,)
    (_, y), _ = har.make_data(har.check_settings(data=str(har_folder), **TINY))[0]
    assert y.shape == (24, 1) and y.dtype == np.float64


def test_validation_holdout_is_stratified_and_subsets(har_folder):
    (tr, va), info = har.make_data(har.check_settings(data=str(har_folder), holdout="validation",
                                                      val_fraction=0.25, optimizer="fw1"))
    assert tr[1].shape[0] + va[1].shape[0] == 24 and info["n_heldout_used"] == 6
    assert sorted(backend.to_numpy(va[1])[:, 0].tolist()) == [0, 0, 0, 1, 1, 1]
    (tr, te), info = har.make_data(har.check_settings(data=str(har_folder), max_train=10,
                                                      max_test=5, optimizer="fw1"))
    assert tr[0].shape == (T, 10, 9) and te[0].shape == (T, 5, 9)


def test_synthetic_stand_in_is_labelled_and_readable(tmp_path):
    """TINY (what `manualgrad run har --synthetic` does): a SYNTHETIC stand-in written in the
    UCI layout under out/synthetic_data, read back by the real loader; runs and record say so."""
    rec = har.run(verbose=False, progress=False, out=str(tmp_path / "out"), **har.TINY)
    assert list(rec["runs"]) == ["synthetic_har2/%s" % m for m in har.METHODS]
    assert rec["data"]["source"].startswith("SYNTHETIC") and rec["settings"]["data"] is None
    assert rec["data"]["T"] == har.SYNTHETIC["T"] and rec["data"]["n_train"] == 48
    assert (tmp_path / "out" / "synthetic_data" / "UCI HAR Dataset" / "train" / "y_train.txt"
            ).is_file()
    har.write_synthetic_har(tmp_path / "syn", n_train=12, n_test=6, T=5, seed=3)
    (u, y), (ut, yt) = har_sequences(tmp_path / "syn", normalize=None)
    assert u.shape == (5, 12, 9) and ut.shape == (5, 6, 9)
    assert backend.to_numpy(y).tolist() == [(k % 6 + 1) % 2 for k in range(12)]
    shift = backend.to_numpy(u).mean(axis=(0, 2))           # class 1 windows sit 0.8 higher
    yy = backend.to_numpy(y)
    assert shift[yy == 1].mean() - shift[yy == 0].mean() > 0.4
    with pytest.raises(ValueError, match="not both"):
        har.check_settings(data=str(tmp_path), synthetic=True)


def test_without_data_the_error_says_where_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="archive.ics.uci.edu/dataset/240") as exc:
        har.run(verbose=False, out=str(tmp_path))
    assert "--data" in str(exc.value) and "UCI HAR Dataset" in str(exc.value)
    with pytest.raises(FileNotFoundError, match="UCI HAR"):
        har.run(verbose=False, progress=False, data=str(tmp_path / "missing"),
                out=str(tmp_path / "o"))
    # the results folder was made ready (empty) before the data were read; nothing written
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    from manualgrad import cli       # `manualgrad run har` without --data: the same message
    settings = cli.experiment_settings("har", har, ["--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="dataset/240"):
        har.run(**settings)


def test_settings_validation_names_the_setting(har_folder):
    d = str(har_folder)
    s = har.check_settings(data=d)
    assert s["tbptt_k1"] == s["tbptt_k2"] == 16 and s["hidden"] == 80
    assert s["grouping"] == "fastgrnn" and s["head"] == "mse"
    for bad, err, word in ((dict(optimizer="indrnn"), ValueError, "optimizer"),
                           (dict(head="hinge"), ValueError, "head"),
                           (dict(grouping="odd"), ValueError, "grouping"),
                           (dict(noise_variance=-1.0), ValueError, "noise_variance"),
                           (dict(clip_sgd=0.0), ValueError, "clip_sgd"),
                           (dict(lr_lstm_fw=-1e-3), ValueError, "lr_lstm_fw"),
                           (dict(tbptt_k1=None), TypeError, "tbptt_k1"),
                           (dict(tbptt_k1=4, tbptt_k2=2), ValueError, "tbptt_k2"),
                           (dict(fw_K=0), ValueError, "fw_K"),
                           (dict(data=5), TypeError, "data"),
                           (dict(speed=1), TypeError, "speed")):
        with pytest.raises(err, match=word):
            har.check_settings(**dict(dict(data=d), **bad))
    # windows longer than the data's T are refused once the data are read, if TBPTT is to run
    with pytest.raises(ValueError, match="k1"):
        har.make_data(har.check_settings(data=d))          # k1 = 16 > T = 8
    with pytest.raises(ValueError, match="k1"):
        har.make_data(har.check_settings(data=d, optimizer="adam,tbptt_fw"))
    assert har.make_data(har.check_settings(data=d, optimizer="adam,lstm_fw"))[1]["T"] == T


def test_command_line_options_cover_the_settings(har_folder, tmp_path):
    p = argparse.ArgumentParser()
    har.add_arguments(p)
    ns = vars(p.parse_args(["--data", str(har_folder), "--noisy", "--optimizer",
                            "sgd_clip,lstm_adam", "--clip-sgd", "0.5", "--lr-lstm-adam", "0.01",
                            "--quick"]))
    assert ns.pop("quick") is True and set(ns) == set(har.DEFAULTS)
    assert ns["noisy"] is True and ns["clip_sgd"] == 0.5 and ns["lr_lstm_adam"] == 0.01
    assert apply_quick({"quick": True}, har.DEFAULTS, har.QUICK)["max_train"] == har.QUICK["max_train"]
    ns.update(TINY, progress=False, out=str(tmp_path / "out"))
    rec = har.run(verbose=False, **ns)
    assert list(rec["runs"]) == ["noisy_har2/sgd_clip", "noisy_har2/lstm_adam"]
