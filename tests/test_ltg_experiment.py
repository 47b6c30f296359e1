"""The Long Time Gap experiment (JP Sec. IV-A) and its study: files, keys, determinism, errors.

Tiny settings (n ~ 120, T = 8, 2 epochs) so the file runs in a few seconds; the numbers of the
real experiment are in docs/ltg.md.
"""
import json

import pytest

from manualgrad import cli
from manualgrad.experiments import ltg, study, threads

TINY = dict(n=120, n_test=40, T=8, hidden=5, epochs=2, progress=False)
STUDY_TINY = dict(seeds=(0, 1), alphas=(0.1, 1.0), scales=("fan_in",), hidden=(5,), n=120,
                  n_test=40, T=8, epochs=2, progress=False)


def _rows(rec):
    return {m: [{k: v for k, v in row.items()} for row in r["epochs"]]
            for m, r in rec["runs"].items()}


@pytest.mark.parametrize("method", ["adjoint", "coadjoint", "lstm", "both", "all"])
def test_run_each_method_writes_results_csv_and_figures(tmp_path, method):
    out = tmp_path / method
    rec = ltg.run(method=method, out=str(out), verbose=False, **TINY)
    methods = {"both": ["adjoint", "coadjoint"], "all": ["adjoint", "coadjoint", "lstm"]}.get(
        method, [method])
    assert rec["methods"] == methods and sorted(rec["runs"]) == sorted(methods)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["split"]["test"] == [80, 120] and on_disk["split"]["train"] == [0, 80]
    for m in methods:
        rows = on_disk["runs"][m]["epochs"]
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        for r in rows:
            assert {"test_F", "test_error", "test_G", "lam1", "lamT"} <= set(r)
            assert 0.0 <= r["test_error"] <= 1.0 and r["lam1"] > 0 and r["lamT"] > 0
        assert "train_F" in rows[1] and ("train_G" in rows[1]) == (m == "coadjoint")
        assert len(on_disk["runs"][m]["adjoint_norms"]["2"]) == TINY["T"]
    csv = (out / "history.csv").read_text().splitlines()
    assert csv[0].startswith("epoch,method") and len(csv) == 1 + 3 * len(methods)
    for png in ("test_error.png", "adjoint_norms.png"):
        assert (out / png).stat().st_size > 1000


def test_both_methods_start_from_the_same_init_and_runs_repeat_exactly(tmp_path):
    a = ltg.run(out=str(tmp_path / "a"), verbose=False, **TINY)
    b = ltg.run(out=str(tmp_path / "b"), verbose=False, **TINY)
    ra, rb = _rows(a), _rows(b)
    assert ra == rb                                             # seeded: identical numbers
    assert ra["adjoint"][0] == ra["coadjoint"][0]               # same init, same test data
    assert ra["adjoint"][2]["test_F"] != ra["coadjoint"][2]["test_F"]   # the penalty acted
    c = ltg.run(out=str(tmp_path / "c"), verbose=False, seed=1, **TINY)
    assert _rows(c)["adjoint"][0] != ra["adjoint"][0]


def test_run_options_optimizer_clip_scale(tmp_path):
    rec = ltg.run(method="coadjoint", G="released", alpha=2.0, optimizer="adam", clip=0.5,
                  scale=1.0, bias_scale=1.0, out=str(tmp_path), verbose=False, **TINY)
    s = rec["settings"]
    assert s["lr"] == 1e-3 and s["optimizer"] == "adam" and s["G"] == "released"
    assert "clip_fired" in rec["runs"]["coadjoint"]["epochs"][1]


@pytest.mark.parametrize("bad, message", [
    (dict(alpha=-1.0), "alpha must be >= 0"),
    (dict(method="lstm2"), "unknown method"),
    (dict(G="G99"), "unknown penalty"),
    (dict(optimizer="rmsprop"), "unknown optimizer"),
    (dict(n_test=200), "n_test must be smaller"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(clip=-1.0), "clip must be > 0"),
])
def test_run_rejects_bad_settings_with_clear_errors(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        ltg.run(out=str(tmp_path), verbose=False, **dict(TINY, **bad))
    with pytest.raises(TypeError, match="unknown LTG setting"):
        ltg.run(out=str(tmp_path), verbose=False, nosuch=1, **TINY)


def test_cli_run_ltg_prints_tables_and_rejects_bad_arguments(tmp_path, capsys):
    argv = ["run", "ltg", "--n", "120", "--n-test", "40", "--T", "8", "--hidden", "5",
            "--epochs", "2", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv + ["--method", "coadjoint", "--G", "G20", "--alpha", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "train G" in text and "||lam_1||" in text and "G=G20, alpha=0.5" in text
    assert cli.main(argv + ["--alpha", "-1"]) == 2
    assert "alpha must be >= 0" in capsys.readouterr().err
    for opt, value in (("--method", "nosuch"), ("--G", "G99"), ("--optimizer", "rmsprop")):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv + [opt, value])
        assert exc.value.code == 2
        assert "invalid choice" in capsys.readouterr().err


def test_study_grid_files_and_aggregates(tmp_path):
    rec = study.run_ltg_study(workers=1, out=str(tmp_path), verbose=False, **STUDY_TINY)
    cells = rec["cells"]
    # the adjoint method does not depend on alpha: one adjoint cell, one coadjoint cell per alpha
    assert [(c["method"], c["alpha"]) for c in cells] == [("adjoint", None), ("coadjoint", 0.1),
                                                         ("coadjoint", 1.0)]
    assert len(rec["runs"]) == 2 * 3
    for c in cells:
        assert c["runs"] == 2 and c["seeds"] == [0, 1] and c["gap"] == 4
        assert [e["epoch"] for e in c["test_error"]] == [0, 1, 2]
        assert all(e["n"] == 2 and e["min"] <= e["mean"] <= e["max"] for e in c["test_error"])
        finals = c["final_errors"]
        assert c["final_error"]["mean"] == pytest.approx(sum(finals) / 2)
        assert c["final_error"]["std"] == pytest.approx(abs(finals[0] - finals[1]) / 2 ** 0.5)
        assert 0 <= c["learned"] <= 2
    # epoch 0 is the shared init: every method has the same test error there, per seed
    assert len({c["test_error"][0]["mean"] for c in cells}) == 1
    on_disk = json.loads((tmp_path / "study.json").read_text())
    assert on_disk["settings"]["scales"] == ["fan_in"] and on_disk["workers"] == 1
    csv = (tmp_path / "study.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 * 3 and "test_error_mean" in csv[0]
    assert (tmp_path / "study_G23.png").stat().st_size > 1000


def test_study_pool_gives_the_numbers_of_one_process(tmp_path):
    pytest.importorskip("distributed", reason="the study's worker pool is Dask's: pip install "
                                              "'manualgrad[study]'")
    kw = dict(STUDY_TINY, alphas=(0.5,))
    one = study.run_ltg_study(workers=1, out=str(tmp_path / "one"), verbose=False, **kw)
    two = study.run_ltg_study(workers=2, out=str(tmp_path / "two"), verbose=False, **kw)
    assert two["workers"] == 2
    strip = [{k: v for k, v in c.items() if k != "wall_time_s_mean"} for c in one["cells"]]
    assert strip == [{k: v for k, v in c.items() if k != "wall_time_s_mean"}
                     for c in two["cells"]]


def test_cli_study_runs_and_rejects_bad_arguments(tmp_path, capsys):
    argv = ["study", "ltg", "--seeds", "0", "--alphas", "1", "--scales", "fan_in", "0.5",
            "--hidden", "4", "--n", "60", "--n-test", "20", "--T", "6", "--epochs", "1",
            "--workers", "1", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "final err" in text and "learned" in text and "coadjoint G23 a=1" in text
    assert (tmp_path / "study.json").exists()
    assert cli.main(argv + ["--alphas", "-1"]) == 2
    assert "alpha must be >= 0" in capsys.readouterr().err
    assert cli.main(argv + ["--scales", "big"]) == 2
    assert "init scale 'big'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["study", "nosuch"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--G", "G99"])
    assert exc.value.code == 2


def test_quick_grid_is_what_the_docs_say():
    s = study.settings_from_args(type("A", (), dict(
        {k: None for k in study.LTG_DEFAULTS}, quick=True, progress=True))())
    assert s["seeds"] == (0, 1, 2) and s["epochs"] == 10 and s["hidden"] == (10, 32)
    assert len(study.jobs_ltg(study._check_study(s))) == 3 * 2 * 2 * (1 + 2)


def test_blas_thread_limit_is_a_context_and_restores():
    """Read the limit back through threadpoolctl: 1 inside, the previous limit after (also after
    an exception); None leaves it alone."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def limits():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    if not limits():
        pytest.skip("threadpoolctl finds no BLAS in this process")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = limits()
        with threads.blas_threads(1):
            assert set(limits()) == {1}
        assert limits() == before
        with pytest.raises(RuntimeError):
            with threads.blas_threads(1):
                raise RuntimeError("inside")
        assert limits() == before
        with threads.blas_threads(None):
            assert limits() == before


def test_blas_thread_limit_restores_through_openblas_without_threadpoolctl(monkeypatch):
    """The fallback: OpenBLAS's own set/get functions; the old count is set back on exit."""
    calls, current = [], [4]

    def setter(n):
        calls.append(n)
        current[0] = n

    monkeypatch.setattr(threads, "_threadpool_limits", lambda: None)
    monkeypatch.setattr(threads, "_openblas_handles", lambda: [(setter, lambda: current[0])])
    with threads.blas_threads(1):
        assert current[0] == 1
    assert calls == [1, 4] and current[0] == 4


def test_adjoints_of_a_scalar_head_are_proportional_to_the_residual():
    """Why log-penalties on ||lambda_k|| fight the loss (docs/ltg.md): with one sigmoid output and
    BCE, every lambda_k = (y - yhat) v_k with v_k independent of the label, so
    log ||lambda_k||^2 = 2 log|y - yhat| + log ||v_k||^2."""
    import numpy as np
    from manualgrad import backend, data, rnn
    u, _ = data.long_time_gap(n=6, T=7, seed=3)
    P = rnn.init_params(5, 4, 1, seed=2, bias_scale=0.5)
    s1 = rnn.sweep(P, u, np.ones((6, 1)))
    s0 = rnn.sweep(P, u, np.zeros((6, 1)))
    yhat = backend.to_numpy(s1.traj.yhat)[:, 0]
    v1 = backend.to_numpy(s1.adj.lam) / (1.0 - yhat)[None, :, None]
    v0 = backend.to_numpy(s0.adj.lam) / (0.0 - yhat)[None, :, None]
    np.testing.assert_allclose(v1, v0, rtol=1e-12, atol=1e-300)


def test_lstm_method_trains_the_lstm_cell_from_the_same_seed(tmp_path):
    from manualgrad.cells import lstm
    rec = ltg.run(method="lstm", out=str(tmp_path), verbose=False, **TINY)
    assert rec["methods"] == ["lstm"]
    s = ltg.check_settings(**dict(ltg.DEFAULTS, **TINY, method="lstm"))
    (u_tr, y_tr), (u_te, y_te) = ltg.make_data(s)
    P = lstm.init_params(s["p"], s["hidden"], 1, seed=s["seed"], scale=s["scale"],
                         bias_scale=s["bias_scale"])
    F0 = float(lstm.loss(P, u_te, y_te, output="sigmoid", loss="bce"))
    assert abs(rec["runs"]["lstm"]["epochs"][0]["test_F"] - F0) < 1e-12


@pytest.mark.slow
def test_quick_study_from_the_cli_finishes_and_writes_its_outputs(tmp_path, capsys):
    """`manualgrad study ltg --quick` (36 runs; ~1 min on 2 cores): run with `pytest -m slow`."""
    from manualgrad import cli
    out = tmp_path / "study"
    assert cli.main(["study", "ltg", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "learned" in text
    rec = json.loads((out / "study.json").read_text())
    assert len(rec["cells"]) >= 12
    assert (out / "study.csv").stat().st_size > 100


def test_coadjoint_grad_fn_collects_G_and_turns_a_sweep_failure_into_a_nan_loss(monkeypatch):
    """``manualgrad.coadjoint.coadjoint_grad_fn`` (what ltg, table2, imdb and lecture 02 train
    with): the gradient of F + alpha G, each minibatch's G kept, a FloatingPointError noted."""
    import numpy as np
    from manualgrad import coadjoint, data, rnn
    u, y = data.long_time_gap(n=6, T=5, seed=1)
    P = rnn.init_params(5, 3, 1, seed=0)
    G_seen, failure = [], []
    fn = coadjoint.coadjoint_grad_fn("G23", 0.1, G_seen, failure, **ltg.KW)
    F, grads = fn(P, u, y)
    F_ref, G_ref, g_ref = coadjoint.loss_and_grad(P, u, y, G="G23", alpha=0.1, **ltg.KW)
    assert F == F_ref and G_seen == [float(G_ref)] and not failure
    for k in g_ref:
        np.testing.assert_array_equal(grads[k], g_ref[k])

    def boom(*a, **k):
        raise FloatingPointError("sweep overflowed")
    monkeypatch.setattr(coadjoint, "loss_and_grad", boom)
    F, grads = fn(P, u, y)
    assert F != F and grads == {} and failure == ["sweep overflowed"] and len(G_seen) == 1
