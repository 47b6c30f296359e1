"""The neural ODE vs HBNODE experiment (manualgrad/experiments/odes.py): files, keys, errors.

Tiny settings (32 points, T = 1, 2 epochs) so the file runs in seconds; the numbers of the real
experiment are in docs/ode_experiment.md.
"""
import json
import math

import numpy as np
import pytest

from manualgrad import backend, cli
from manualgrad.experiments import odes, record

TINY = dict(odes.TINY, progress=False)


def test_nested_spheres_radii_labels_and_seed():
    x, y = odes.nested_spheres(400, d=3, r1=0.5, r2=1.0, r3=1.5, seed=7)
    x, y = backend.to_numpy(x), backend.to_numpy(y)
    assert x.shape == (400, 3) and y.shape == (400, 1) and y.dtype.kind == "f"
    r = np.linalg.norm(x, axis=1)
    inner, outer = r[y[:, 0] == 0], r[y[:, 0] == 1]
    assert len(inner) == len(outer) == 200
    assert inner.max() < 0.5 and outer.min() > 1.0 and outer.max() < 1.5
    # uniform in volume: P(r < r1/2 | ball) = 2^-3
    assert abs(np.mean(inner < 0.25) - 0.125) < 0.06
    x2, _ = odes.nested_spheres(400, d=3, r1=0.5, r2=1.0, r3=1.5, seed=7)
    x3, _ = odes.nested_spheres(400, d=3, r1=0.5, r2=1.0, r3=1.5, seed=8)
    assert np.array_equal(x, backend.to_numpy(x2)) and not np.array_equal(x, backend.to_numpy(x3))
    with pytest.raises(ValueError, match="r1 < r2 < r3"):
        odes.nested_spheres(10, r1=1.0, r2=0.5, r3=2.0)


def test_tiny_run_writes_results_and_figures_with_both_runs(tmp_path):
    out = tmp_path / "ode"
    rec = odes.run(out=str(out), verbose=False, **TINY)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == "ode" and sorted(on_disk["runs"]) == ["hbnode", "node"]
    assert on_disk["settings"]["T"] == TINY["T"] and on_disk["seed"] == 0
    assert sorted(on_disk["figures"]) == ["adjoint_norms.png", "nfe.png", "training.png"]
    for png in on_disk["figures"]:
        assert (out / png).stat().st_size > 1000
    iters = TINY["epochs"] * math.ceil(TINY["n_train"] / TINY["batch_size"])
    for name, run in on_disk["runs"].items():
        rows = run["epochs"]
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        for r in rows:
            assert {"test_F", "test_acc", "nfe_forward", "nfe_backward", "probe_nfe_forward",
                    "adj_ratio", "adj_h_ratio", "adj_ratio_discrete", "jac_rho_mean",
                    "grad_rel_diff"} <= set(r)
            assert 0.0 <= r["test_acc"] <= 1.0 and r["nfe_forward"] >= 8 and r["adj_ratio"] > 0
            # the continuous adjoint agrees with the discrete one to the solver's tolerance
            assert r["grad_rel_diff"] < 1e-2
            assert abs(math.log(r["adj_ratio"] / r["adj_ratio_discrete"])) < 1e-2
        assert "train_F" in rows[1] and "train_F" not in rows[0]
        assert len(run["nfe_forward_iter"]) == len(run["nfe_backward_iter"]) == iters
        assert rows[1]["nfe_forward"] == np.mean(run["nfe_forward_iter"][:iters // 2])
        curves = run["adjoint_norms"]
        assert len(curves["t"]) == TINY["norm_points"] and curves["t"][-1] == TINY["T"]
        assert sorted(curves["epochs"]) == ["0", "1", "2"]
        med, q25, q75 = curves["epochs"]["2"]["ratio"]
        assert abs(med[-1] - 1.0) < 1e-12                      # normalised at t = T
        assert all(a <= m <= b for a, m, b in zip(q25, med, q75))
        assert abs(med[0] - rows[2]["adj_ratio"]) < 1e-9 * med[0]
        assert run["n_params"] == (2 * 4 * 2 + 4 + 2 + 3 + (name == "hbnode"))
        assert rec["summary"][name]["test_acc"] == rows[-1]["test_acc"]
    assert "gamma" in on_disk["runs"]["hbnode"]["epochs"][1]
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,")
    import matplotlib.pyplot as plt
    fig = odes.plot_seeds([str(out), rec], path=str(tmp_path / "seeds.png"))
    assert len(fig.axes) == 4 and (tmp_path / "seeds.png").stat().st_size > 1000
    plt.close(fig)
    with pytest.raises(ValueError, match="no records"):
        odes.plot_seeds([])


def test_runs_repeat_exactly_and_models_share_their_init(tmp_path):
    kw = dict(TINY, epochs=1, model="node")
    a = odes.run(out=str(tmp_path / "a"), verbose=False, **kw)
    b = odes.run(out=str(tmp_path / "b"), verbose=False, **kw)
    assert record.comparable(a)["runs"] == record.comparable(b)["runs"]
    c = odes.run(out=str(tmp_path / "c"), verbose=False, **dict(kw, seed=1))
    assert c["runs"]["node"]["epochs"][0]["test_F"] != a["runs"]["node"]["epochs"][0]["test_F"]
    s = odes.check_settings(**TINY)
    p_node = odes.make_model("node", s).params0
    p_hb = odes.make_model("hbnode", s).params0
    assert set(p_hb) == set(p_node) | {"gamma_raw"}
    for k in p_node:
        assert np.array_equal(backend.to_numpy(p_node[k]), backend.to_numpy(p_hb[k])), k


@pytest.mark.parametrize("name", ["node", "hbnode"])
def test_adjoint_profile_matches_per_example_gradients(name):
    """adj_ratio is the median over examples of ||dF_b/dh0|| / ||dF_b/dh(T)||: recompute it one
    example at a time with the package's loss_and_grad (discrete adjoint)."""
    s = odes.check_settings(**dict(TINY, rtol=1e-9, atol=1e-11))
    model = odes.make_model(name, s)
    (x, y), _ = odes.make_data(s)
    x, y = x[:5], y[:5]
    P = model.params0
    prof = odes.adjoint_profile(model, P, x, y, np.linspace(0.0, s["T"], 3), 1e-10, 1e-12,
                                s["max_steps"])
    ratios_h, ratios = [], []
    for b in range(5):
        _, _, info = model.loss_and_grad(P, x[b:b + 1], y[b:b + 1], "discrete")
        aT = np.linalg.norm(backend.to_numpy(info["aT"]))
        a0 = backend.to_numpy(info["grad_h0"] if name == "node" else info["grad_z0"])
        ratios.append(np.linalg.norm(a0) / aT)
        ratios_h.append(np.linalg.norm(backend.to_numpy(info["grad_h0"])) / aT)
    assert prof["adj_ratio"] == pytest.approx(np.median(ratios), rel=1e-6)
    assert prof["adj_ratio_discrete"] == pytest.approx(np.median(ratios), rel=1e-6)
    assert prof["adj_h_ratio"] == pytest.approx(np.median(ratios_h), rel=1e-6)
    assert prof["recon_err"] < 1e-6
    assert prof["ratio"][0][-1] == pytest.approx(1.0, abs=1e-12)


def test_jacobian_spectrum_is_the_fields_jacobian():
    s = odes.check_settings(**dict(TINY, gamma=0.3))
    (x, _), _ = odes.make_data(s)
    x = x[:4]
    for name in ("node", "hbnode"):
        model = odes.make_model(name, s)
        P = model.params0
        sol = model.forward(P, x, record=True)
        lam = odes.jacobian_spectrum(model, P, sol)
        n = s["d"] if name == "node" else 2 * s["d"]
        assert lam.shape == (len(sol.ts) * 4, n)
        z = sol.zs[-1]
        if name == "node":
            h = backend.to_numpy(z)
            th1, th2 = (backend.to_numpy(P[k]) for k in ("theta1", "theta2"))
            J = np.einsum("ih,bh,hj->bij", th2, 1 - np.tanh(h @ th1.T) ** 2, th1)
        else:  # B = [[0, I], [J, -gamma I]]: its eigenvalues solve c^2 + gamma c - lambda(J) = 0
            Jh = backend.to_numpy(model.field.jacobian(0.0, z[:, :s["d"]], P))
            J = np.zeros((4, n, n))
            J[:, :s["d"], s["d"]:] = np.eye(s["d"])
            J[:, s["d"]:, :s["d"]] = Jh
            J[:, s["d"]:, s["d"]:] = -0.3 * np.eye(s["d"])
            # Proposition 1 for t - T = 1: the eigenvalues pair up with sums -gamma (trace -n gamma)
            assert np.allclose(lam.sum(axis=1).real, -0.3 * s["d"])
        want = np.sort_complex(np.linalg.eigvals(J))
        got = np.sort_complex(lam[-4:])
        assert np.allclose(got, want, atol=1e-10)


def test_a_failing_solver_stops_the_run_cleanly(tmp_path):
    rec = odes.run(out=str(tmp_path), verbose=False, **dict(TINY, model="node", max_steps=2))
    run = rec["runs"]["node"]
    assert "max_steps" in run["stopped"]
    assert (tmp_path / "results.json").exists()


@pytest.mark.parametrize("bad, error, message", [
    (dict(model="anode"), ValueError, "unknown model"),
    (dict(r1=1.0, r2=0.5), ValueError, "r1 < r2 < r3"),
    (dict(T=0.0), ValueError, "T must be > 0"),
    (dict(lr=-1.0), ValueError, "lr must be > 0"),
    (dict(rtol=0.0), ValueError, "rtol must be > 0"),
    (dict(hidden=0), ValueError, "hidden must be >= 1"),
    (dict(norm_points=1), ValueError, "norm_points must be >= 2"),
    (dict(gamma=1.5), ValueError, r"gamma must lie in \(0, 1\)"),
    (dict(gamma=-0.1, learn_gamma=False), ValueError, "gamma must be >= 0"),
    (dict(adjoint="forward"), ValueError, "adjoint must be one of discrete, continuous"),
    (dict(solver="euler2"), ValueError, "solver must be one of .*beuler"),
    (dict(solver="beuler"), ValueError, "solver 'beuler' takes fixed steps: give steps"),
    (dict(steps=10), ValueError, "steps=10 is for fixed-step solvers"),
    (dict(solver="rk4", steps=0), ValueError, "steps must be >= 1"),
    (dict(adjoint="checkpointed"), ValueError, "needs checkpoints="),
    (dict(checkpoints=3), ValueError, "checkpoints=3 is used only by method='checkpointed'"),
    (dict(adjoint="checkpointed", checkpoints=0, solver="rk4", steps=4), ValueError,
     "checkpoints"),
    (dict(epochs=2.5), TypeError, "epochs must be an integer"),
    (dict(learn_gamma="yes"), TypeError, "learn_gamma must be True or False"),
    (dict(nosuch=1), TypeError, "unknown ode setting"),
])
def test_bad_settings_raise_clear_errors(tmp_path, bad, error, message):
    with pytest.raises(error, match=message):
        odes.run(out=str(tmp_path), verbose=False, **dict(TINY, **bad))


@pytest.mark.parametrize("solver", ["rk4", "sdirk2"])
def test_training_with_a_checkpointed_adjoint_follows_the_discrete_one(tmp_path, solver):
    """--adjoint checkpointed trains on the discrete adjoint's gradient (X-CKPT: equal to
    round-off), so the two runs' histories agree; the solver is the one asked for."""
    kw = dict(TINY, solver=solver, steps=6, check_discrete=False)
    ref = odes.run(out=str(tmp_path / "d"), verbose=False, **dict(kw, adjoint="discrete"))
    ck = odes.run(out=str(tmp_path / "c"), verbose=False,
                  **dict(kw, adjoint="checkpointed", checkpoints=2))
    for name in odes.MODELS:
        a, b = ref["runs"][name]["epochs"], ck["runs"][name]["epochs"]
        assert len(a) == len(b) == TINY["epochs"] + 1
        for ra, rb in zip(a, b):
            for k in ("train_F", "test_F", "test_acc"):
                if k in ra:
                    assert rb[k] == pytest.approx(ra[k], rel=1e-10, abs=1e-12), (name, k)
        assert not ck["runs"][name]["stopped"]
        if solver == "rk4":   # the solver asked for: 6 steps of 4 evaluations each
            assert set(ck["runs"][name]["nfe_forward_iter"]) == {24}
    assert ck["settings"]["solver"] == solver and ck["settings"]["checkpoints"] == 2


def test_fixed_gamma_is_accepted_outside_the_unit_interval():
    s = odes.check_settings(**dict(TINY, gamma=2.0, learn_gamma=False))
    model = odes.make_model("hbnode", s)
    assert "gamma_raw" not in model.params0 and model.gamma(model.params0) == 2.0


def test_command_line_settings_and_quick(tmp_path, capsys):
    argv = ["--n-train", "32", "--n-test", "16", "--T", "1", "--hidden", "4", "--epochs", "1",
            "--batch-size", "16", "--rtol", "1e-3", "--atol", "1e-4", "--norm-examples", "8",
            "--norm-points", "5", "--learn-gamma", "false", "--model", "hbnode",
            "--no-progress", "--out", str(tmp_path)]
    s = cli.experiment_settings("ode", odes, argv)
    assert s["learn_gamma"] is False and s["T"] == 1.0 and s["model"] == "hbnode"
    rec = odes.run(**s)
    assert list(rec["runs"]) == ["hbnode"] and rec["runs"]["hbnode"]["gamma"] == 0.5
    text = capsys.readouterr().out
    assert "HBNODE (26 parameters)" not in text and "HBNODE (25 parameters)" in text
    assert "a(0)/a(T)" in text and "summary:" in text
    q = cli.experiment_settings("ode", odes, ["--quick", "--epochs", "3"])
    assert q["norm_every"] == odes.QUICK["norm_every"] != odes.DEFAULTS["norm_every"]
    assert q["epochs"] == 3                                  # an explicit option wins
    with pytest.raises(SystemExit):
        cli.experiment_settings("ode", odes, ["--learn-gamma", "maybe"])


def test_run_quick_applies_quick_to_settings_left_at_their_defaults(tmp_path):
    rec = odes.run(out=str(tmp_path), verbose=False, quick=True, **dict(TINY, model="node"))
    assert rec["settings"]["norm_every"] == odes.QUICK["norm_every"]     # default -> QUICK
    assert rec["settings"]["epochs"] == TINY["epochs"]                   # given -> kept
    run = rec["runs"]["node"]
    assert sorted(run["adjoint_norms"]["epochs"]) == ["0", "2"]          # every 5th and the last
    assert "adj_ratio" not in run["epochs"][1] and "adj_ratio" in run["epochs"][2]
