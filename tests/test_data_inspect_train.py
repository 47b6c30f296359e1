"""LTG data, adjoint-norm inspection, the training loop and the CLI."""
import functools
import json

import numpy as np
import pytest

from manualgrad import backend, cli, data, inspect, rnn, train
from manualgrad.optim.sgd import SGD, sgd_step


def test_long_time_gap_labels_follow_the_informative_step_and_are_seeded():
    u, y = data.long_time_gap(n=500, T=12, p=5, informative_step=4, seed=3)
    assert u.shape == (12, 500, 5) and y.shape == (500, 1)
    assert np.array_equal(y[:, 0], (u[3].sum(axis=1) > 0).astype(float))
    assert not np.array_equal(y[:, 0], (u[4].sum(axis=1) > 0).astype(float))
    assert 0.4 < y.mean() < 0.6 and abs(u.mean()) < 0.05 and abs(u.std() - 1) < 0.05
    u2, y2 = data.long_time_gap(n=500, T=12, p=5, informative_step=4, seed=3)
    assert np.array_equal(u, u2) and np.array_equal(y, y2)
    (a, b), (c, d) = data.split(u, y, 100)
    assert a.shape == (12, 400, 5) and d.shape == (100, 1) and np.array_equal(c, u[:, 400:])


def test_adjoint_norms_table_and_plot(tmp_path):
    u, y = data.long_time_gap(n=64, T=30, seed=0)
    s = rnn.sweep(rnn.init_params(5, 16, 1, seed=0), u, y)
    n = inspect.adjoint_norms(s.adj)
    assert n.per_example.shape == (30, 64) and n.mean.shape == (30,) and n.lam0.shape == (64,)
    assert np.allclose(n.mean[-1], np.linalg.norm(s.adj.lam[-1], axis=1).mean())
    assert n.ratio() < 1e-3  # tanh RNN at 1/sqrt(m) init: the adjoint decays toward k = 1
    text = inspect.norm_table([n, n], labels=["a", "b"])
    assert text.splitlines()[0].split() == ["k", "a", "b"] and len(text.splitlines()) > 4
    fig = inspect.plot_adjoint_norms(n, labels=["init"], per_example=True)
    assert fig.axes[0].get_yscale() == "log"
    fig.savefig(tmp_path / "n.png")
    with pytest.raises(ValueError, match="expected an Adjoint or a \\(T, B, m\\) array"):
        inspect.adjoint_norms(np.zeros((3, 4)))


def test_sgd_step_is_pure_and_checks_keys():
    P = {"a": np.ones(2)}
    Q = sgd_step(P, {"a": np.ones(2)}, 0.5)
    assert np.allclose(Q["a"], 0.5) and np.allclose(P["a"], 1.0)
    with pytest.raises(ValueError, match="keys"):
        sgd_step(P, {"b": np.ones(2)}, 0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        SGD(0.0)


def test_fit_decreases_the_loss_and_is_repeatable():
    u, y = data.long_time_gap(n=256, T=5, informative_step=4, seed=0)  # short gap: learnable
    gf = functools.partial(rnn.loss_and_grad, activation="tanh", output="sigmoid", loss="bce")
    ev = lambda P: {"F": float(rnn.loss(P, u, y))}  # noqa: E731
    runs = [train.fit(rnn.init_params(5, 8, 1, seed=0), gf, u, y, epochs=5, batch_size=32,
                      optimizer=SGD(0.5), seed=1, evaluate=ev, progress=False) for _ in range(2)]
    F = runs[0].column("F")
    assert len(F) == 6 and F[-1] < 0.8 * F[0]
    assert F == runs[1].column("F")
    assert train.classification_error(rnn.forward(runs[0].params, u).yhat, y) < 0.3


def test_fit_stops_on_nan_with_a_clear_message(capsys):
    def grad_fn(P, u, y):
        return float("nan"), {k: v for k, v in P.items()}
    u, y = data.long_time_gap(n=16, T=4, seed=0)
    h = train.fit({"a": np.ones(1)}, grad_fn, u, y, epochs=3, batch_size=8, optimizer=SGD(0.1),
                  progress=False)
    assert "non-finite loss" in h.stopped and len(h.epochs) == 2
    assert "stopped early" in capsys.readouterr().err


def test_classification_error():
    assert train.classification_error(np.array([[0.9], [0.2]]), np.array([[1.0], [1.0]])) == 0.5
    yhat = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert train.classification_error(yhat, np.array([1, 1])) == 0.5
    assert train.classification_error(yhat, np.array([[0, 1.0], [1.0, 0]])) == 0.0


def test_cli_run_ltg_tiny_writes_results_and_plot(tmp_path, capsys):
    out = tmp_path / "ltg"
    rc = cli.main(["run", "ltg", "--n", "120", "--n-test", "40", "--T", "10", "--hidden", "6",
                   "--epochs", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "||lam_1||" in text and "epoch 2" in text
    rec = json.loads((out / "results.json").read_text())
    assert len(rec["runs"]["adjoint"]["epochs"]) == 3 and rec["backend"] == backend.get_backend()
    assert len(rec["runs"]["coadjoint"]["epochs"]) == 3
    assert len(rec["runs"]["adjoint"]["adjoint_norms"]["0"]) == 10
    assert (out / "adjoint_norms.png").stat().st_size > 1000
    assert (out / "test_error.png").stat().st_size > 1000


def test_cli_list_check_info_and_errors(capsys):
    assert cli.main(["run", "--list"]) == 0
    assert "ltg" in capsys.readouterr().out
    assert cli.main(["info"]) == 0
    assert "numpy" in capsys.readouterr().out
    assert cli.main(["check"]) == 0
    assert "worst relative error" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "nosuch"])
    assert cli.main(["run", "ltg", "--n", "10", "--n-test", "20", "--no-progress"]) == 2
    assert "n_test must be smaller" in capsys.readouterr().err
