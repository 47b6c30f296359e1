"""Adam (Kingma & Ba 2015, Alg. 1), checkpoints, results files, fit's clip and checkpoints."""
import csv
import functools
import json
import math

import numpy as np
import pytest

from manualgrad import backend, data, optim, rnn, train
from manualgrad.optim import SGD, Adam, adam_init, adam_step

# ----------------------------------------------------------------------------------------- Adam


def test_adam_two_steps_match_the_hand_computation():
    lr, eps = 0.1, 1e-8  # beta1 = 0.9, beta2 = 0.999 (defaults)
    P0 = {"w": np.array([1.0, -2.0])}
    g1, g2 = np.array([2.0, 0.5]), np.array([-1.0, 0.5])
    P1, s1 = adam_step(P0, {"w": g1}, None, lr=lr)
    # t = 1: m = 0.1 g, v = 0.001 g^2; bias corrections 0.1 and 0.001 give mhat = g, vhat = g^2
    assert s1["t"] == 1
    assert np.allclose(s1["m"]["w"], [0.2, 0.05], rtol=0, atol=1e-15)
    assert np.allclose(s1["v"]["w"], [0.004, 0.00025], rtol=0, atol=1e-15)
    hand1 = [1.0 - lr * 2.0 / (2.0 + eps), -2.0 - lr * 0.5 / (0.5 + eps)]  # ~ theta - lr sign(g)
    assert np.allclose(P1["w"], hand1, rtol=0, atol=1e-15)
    P2, s2 = adam_step(P1, {"w": g2}, s1, lr=lr)
    # t = 2: m = 0.9*0.2 + 0.1*(-1) = 0.08 and 0.9*0.05 + 0.1*0.5 = 0.095
    #        v = 0.999*0.004 + 0.001*1 = 0.004996 and 0.999*0.00025 + 0.001*0.25 = 0.00049975
    #        1 - 0.9^2 = 0.19, 1 - 0.999^2 = 0.001999
    assert s2["t"] == 2
    assert np.allclose(s2["m"]["w"], [0.08, 0.095], rtol=0, atol=1e-15)
    assert np.allclose(s2["v"]["w"], [0.004996, 0.00049975], rtol=0, atol=1e-15)
    step0 = lr * (0.08 / 0.19) / (math.sqrt(0.004996 / 0.001999) + eps)
    step1 = lr * (0.095 / 0.19) / (math.sqrt(0.00049975 / 0.001999) + eps)  # constant g: = lr
    hand2 = [hand1[0] - step0, hand1[1] - step1]  # m > 0 still: w[0] keeps moving down
    assert np.allclose(P2["w"], hand2, rtol=0, atol=1e-14)
    assert abs(P2["w"][0] - 0.8733663) < 1e-6 and abs(P2["w"][1] + 2.2) < 1e-6


def test_adam_step_is_pure_and_repeatable():
    P = {"a": np.array([1.0, 2.0]), "b": np.array([[3.0]])}
    G = {"a": np.array([0.5, -0.25]), "b": np.array([[2.0]])}
    S = adam_init(P)
    copies = [{k: v.copy() for k, v in d.items()} for d in (P, G, S["m"], S["v"])]
    out1 = adam_step(P, G, S, lr=0.01)
    out2 = adam_step(P, G, S, lr=0.01)
    for before, after in zip(copies, (P, G, S["m"], S["v"])):
        assert all(np.array_equal(before[k], after[k]) for k in before)
    assert S["t"] == 0
    assert all(np.array_equal(out1[0][k], out2[0][k]) for k in P)
    assert out1[1]["t"] == out2[1]["t"] == 1


def test_adam_keeps_float32():
    P = {"w": np.ones(3, dtype=np.float32)}
    Q, S = adam_step(P, {"w": np.full(3, 0.3, dtype=np.float32)}, lr=0.01)
    assert Q["w"].dtype == np.float32 and S["m"]["w"].dtype == np.float32
    assert S["v"]["w"].dtype == np.float32


def _quadratic(P, target, curv):
    """F = 1/2 sum_k sum c_k (P_k - target_k)^2, dF/dP_k = c_k (P_k - target_k)."""
    F = sum(0.5 * float((curv[k] * (P[k] - target[k]) ** 2).sum()) for k in P)
    return F, {k: curv[k] * (P[k] - target[k]) for k in P}


def test_adam_converges_on_an_ill_conditioned_quadratic_of_two_arrays():
    rng = np.random.default_rng(0)
    target = {"A": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)}
    curv = {"A": 10.0 ** rng.uniform(-1, 2, (3, 2)), "b": 10.0 ** rng.uniform(-1, 2, 4)}
    P = {"A": np.zeros((3, 2)), "b": np.zeros(4)}
    F0 = _quadratic(P, target, curv)[0]
    opt = Adam(lr=0.05)
    for _ in range(1500):
        P = opt.step(P, _quadratic(P, target, curv)[1])
    assert opt.state["t"] == 1500
    assert _quadratic(P, target, curv)[0] < 1e-6 * F0
    for k in P:
        assert np.allclose(P[k], target[k], atol=1e-3)


def test_two_adam_objects_do_not_share_state():
    P = {"w": np.array([1.0, 1.0])}
    a, b = Adam(lr=0.1), Adam(lr=0.1)
    assert a.state is None and b.state is None
    Pa = a.step(P, {"w": np.array([1.0, 0.0])})
    b.step(P, {"w": np.array([-3.0, 2.0])})
    b.step(P, {"w": np.array([-3.0, 2.0])})
    assert a.state["t"] == 1 and b.state["t"] == 2
    assert a.state["m"]["w"] is not b.state["m"]["w"]
    assert np.allclose(a.state["m"]["w"], [0.1, 0.0])
    assert np.allclose(a.step(Pa, {"w": np.array([1.0, 0.0])})["w"],
                       adam_step(Pa, {"w": np.array([1.0, 0.0])}, adam_step(
                           P, {"w": np.array([1.0, 0.0])}, lr=0.1)[1], lr=0.1)[0]["w"])
    a.reset()
    assert a.state is None and b.state["t"] == 2


@pytest.mark.parametrize("kw, err, msg", [
    (dict(lr=0.0), ValueError, "lr must be > 0"),
    (dict(lr=-1e-3), ValueError, "lr must be > 0"),
    (dict(lr=float("nan")), ValueError, "lr must be > 0"),
    (dict(beta1=1.0), ValueError, "beta1 must satisfy 0 <= beta1 < 1"),
    (dict(beta1=-0.1), ValueError, "beta1"),
    (dict(beta2=1.5), ValueError, "beta2 must satisfy"),
    (dict(eps=0.0), ValueError, "eps must be > 0"),
    (dict(lr="0.1"), TypeError, "lr must be a real number"),
    (dict(beta1=True), TypeError, "beta1 must be a real number"),
])
def test_adam_bad_hyperparameters_raise(kw, err, msg):
    with pytest.raises(err, match=msg):
        Adam(**kw)
    with pytest.raises(err, match=msg):
        adam_step({"w": np.ones(1)}, {"w": np.ones(1)}, **kw)


def test_adam_step_checks_keys_shapes_and_state():
    P = {"w": np.ones(2)}
    with pytest.raises(ValueError, match=r"adam_step: grads has keys \['v'\] but params has keys"):
        adam_step(P, {"v": np.ones(2)})
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape \(3,\)"):
        adam_step(P, {"w": np.ones(3)})
    with pytest.raises(TypeError, match="params must be a mapping"):
        adam_step([np.ones(2)], {"w": np.ones(2)})
    with pytest.raises(ValueError, match="state must be a mapping with keys"):
        adam_step(P, {"w": np.ones(2)}, {"m": {}})
    with pytest.raises(ValueError, match=r"state\['m'\] has keys"):
        adam_step(P, {"w": np.ones(2)}, adam_init({"x": np.ones(2)}))
    assert optim.adam_step is adam_step and "Adam" in optim.__all__


# ------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_checkpoint_round_trip_is_bit_for_bit(tmp_path, dtype):
    rng = np.random.default_rng(1)
    subnormal = 5e-310 if dtype == "float64" else 1e-40
    P = {"W": rng.standard_normal((4, 3)).astype(dtype),
         "b": np.array([-0.0, 1 / 3, subnormal], dtype=dtype), "s": np.array(np.pi, dtype=dtype)}
    meta = {"epoch": 3, "lr": 0.1, "note": "after epoch 3", "row": {"train_F": 0.25},
            "sizes": [1, 2]}
    path = tmp_path / "ckpt.npz"
    assert train.save_checkpoint(path, P, **meta) == str(path)
    with backend.use_backend("numpy", "float32" if dtype == "float64" else "float64"):
        Q, m = train.load_checkpoint(path)  # the saved dtype wins over the active default
    assert list(Q) == list(P) and m == meta
    for k in P:
        assert Q[k].dtype == P[k].dtype and Q[k].shape == P[k].shape
        assert np.array_equal(Q[k], P[k]) and Q[k].tobytes() == P[k].tobytes()  # -0.0 kept too
    with np.load(path, allow_pickle=False) as raw:  # readable with plain numpy, no pickles
        assert np.array_equal(raw["params/W"], P["W"]) and path.name == "ckpt.npz"


def test_checkpoint_path_exact_and_overwrite(tmp_path):
    path = tmp_path / "c.ckpt"  # no .npz appended
    train.save_checkpoint(path, {"w": np.ones(2)}, epoch=1)
    train.save_checkpoint(str(path), {"w": np.zeros(2)}, epoch=2)
    Q, m = train.load_checkpoint(path)
    assert np.array_equal(backend.to_numpy(Q["w"]), np.zeros(2)) and m == {"epoch": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt"]  # no temporaries left


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train.save_checkpoint(tmp_path / "nodir" / "c.npz", {"w": np.ones(1)})
    with pytest.raises(FileNotFoundError, match="no checkpoint file at path"):
        train.load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a manualgrad checkpoint.*without the"):
        train.load_checkpoint(tmp_path / "plain.npz")
    np.save(tmp_path / "one.npy", np.ones(2))
    with pytest.raises(ValueError, match="not a manualgrad checkpoint"):
        train.load_checkpoint(tmp_path / "one.npy")
    (tmp_path / "t.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a manualgrad checkpoint"):
        train.load_checkpoint(tmp_path / "t.npz")
    np.savez(tmp_path / "other.npz", __manualgrad__=np.array('{"format": "something-else"}'))
    with pytest.raises(ValueError, match="header format"):
        train.load_checkpoint(tmp_path / "other.npz")
    with pytest.raises(TypeError, match=r"params\['w'\] must be an array"):
        train.save_checkpoint(tmp_path / "c.npz", {"w": [1.0]})
    with pytest.raises(TypeError, match="meta.*cannot be written as JSON"):
        train.save_checkpoint(tmp_path / "c.npz", {"w": np.ones(1)}, opt=object())
    with pytest.raises(TypeError, match="path must be a str"):
        train.load_checkpoint(3)


# ------------------------------------------------------------------------------- results files


def test_write_json_handles_numpy_scalars_arrays_and_nan(tmp_path):
    record = {"a": np.float64(0.5), "b": np.float32(0.25), "c": np.int64(3), "g": np.bool_(True),
              "d": np.array([1.0, np.nan, np.inf]), "e": float("nan"), "f": (1, 2),
              "h": {"x": -np.inf, 2: "int key"}, "i": np.array(7.0)}
    path = train.write_json(tmp_path / "r.json", record)

    def refuse(c):
        raise AssertionError("non-standard JSON constant %s" % c)
    back = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)
    assert back == {"a": 0.5, "b": 0.25, "c": 3, "g": True, "d": [1.0, None, None], "e": None,
                    "f": [1, 2], "h": {"x": None, "2": "int key"}, "i": 7.0}
    assert type(back["c"]) is int and type(back["g"]) is bool
    with pytest.raises(TypeError, match=r"record\['z'\]\[1\] is a set"):
        train.write_json(tmp_path / "bad.json", {"z": [1, {2}]})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train.write_json(tmp_path / "no" / "r.json", {})


def _toy_data(n=16):
    return np.zeros((3, n, 1)), np.zeros((n, 1))


def test_history_csv_has_a_header_and_one_row_per_epoch(tmp_path):
    u, y = data.long_time_gap(n=64, T=4, seed=0)
    gf = functools.partial(rnn.loss_and_grad, activation="tanh", output="sigmoid", loss="bce")

    def ev(P):
        s = rnn.sweep(P, u, y, activation="tanh", output="sigmoid", loss="bce")
        return {"test_F": float(s.F), "test_error": train.classification_error(s.traj.yhat, y)}
    h = train.fit(rnn.init_params(5, 4, 1, seed=0), gf, u, y, epochs=3, batch_size=16,
                  optimizer=SGD(0.3), evaluate=ev, progress=False)
    path = train.write_history_csv(tmp_path / "h.csv", h)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "test_F", "test_error", "train_F"]
    assert len(rows) == 1 + 4 and [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert rows[1][3] == ""  # no training loss at initialisation
    assert float(rows[4][1]) == h.epochs[3]["test_F"]  # exact round trip
    train.write_history_csv(tmp_path / "n.csv", [{"epoch": 1, "train_F": float("nan")}])
    assert (tmp_path / "n.csv").read_text().splitlines() == ["epoch,train_F", "1,nan"]
    with pytest.raises(TypeError, match="History or a list of dicts"):
        train.write_history_csv(tmp_path / "x.csv", 3)


# ----------------------------------------------------------------------- fit: clip, checkpoints


def test_fit_with_clip_records_clip_fired_and_clips_the_step():
    def grad_fn(P, u, y):  # F = 10 * sum(w): gradient 10 everywhere, global norm 10 sqrt(2)
        return 10.0 * float(P["w"].sum()), {"w": backend.asarray(np.full(2, 10.0))}
    u, y = _toy_data(16)
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=2, batch_size=4,
                  optimizer=SGD(0.1), clip=1.0, progress=False)
    assert h.column("clip_fired") == [None, 4, 4]
    assert np.allclose(h.params["w"], -8 * 0.1 / math.sqrt(2))  # 8 steps of length lr * 1
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=2, batch_size=4,
                  optimizer=SGD(0.1), clip=100, progress=False)
    assert h.column("clip_fired") == [None, 0, 0] and np.allclose(h.params["w"], -8.0)
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=1, batch_size=4,
                  optimizer=SGD(0.1), progress=False)
    assert "clip_fired" not in h.epochs[1]  # rows unchanged without clip
    for bad, err in ((0.0, ValueError), (-1, ValueError), ("1", TypeError), (True, TypeError)):
        with pytest.raises(err, match="clip"):
            train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=1, batch_size=4,
                      optimizer=SGD(0.1), clip=bad, progress=False)


def test_fit_with_adam_writes_a_loadable_checkpoint_each_epoch(tmp_path, capsys):
    u, y = data.long_time_gap(n=128, T=5, informative_step=4, seed=0)
    gf = functools.partial(rnn.loss_and_grad, activation="tanh", output="sigmoid", loss="bce")

    def ev(P):
        s = rnn.sweep(P, u, y, activation="tanh", output="sigmoid", loss="bce")
        return {"test_F": float(s.F), "test_error": train.classification_error(s.traj.yhat, y)}
    path = tmp_path / "model.npz"
    h = train.fit(rnn.init_params(5, 8, 1, seed=0), gf, u, y, epochs=4, batch_size=16,
                  optimizer=Adam(lr=0.02), seed=2, evaluate=ev, checkpoint_path=path,
                  progress=True)
    F = h.column("test_F")
    assert F[-1] < 0.8 * F[0]
    assert "error=" in capsys.readouterr().err  # the bar shows the evaluated error
    Q, meta = train.load_checkpoint(path)
    assert list(Q) == list(h.params)
    assert all(Q[k].dtype == h.params[k].dtype and np.array_equal(Q[k], h.params[k]) for k in Q)
    assert meta["epoch"] == 4 and meta["stopped"] == "" and meta["row"] == h.epochs[-1]
    with pytest.raises(FileNotFoundError, match="checkpoint_path"):
        train.fit(rnn.init_params(5, 8, 1, seed=0), gf, u, y, epochs=1, batch_size=16,
                  optimizer=SGD(0.1), checkpoint_path=tmp_path / "no" / "m.npz", progress=False)


def test_fit_nan_stop_still_checkpoints_the_last_finite_params(tmp_path):
    calls = []

    def grad_fn(P, u, y):  # finite for 3 steps, then NaN
        calls.append(1)
        return (1.0 if len(calls) <= 3 else float("nan")), {"w": backend.asarray(np.ones(2))}
    u, y = _toy_data(16)
    path = tmp_path / "c.npz"
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=3, batch_size=4,
                  optimizer=SGD(0.5), checkpoint_path=path, progress=False)
    assert "non-finite" in h.stopped and len(h.epochs) == 2
    Q, meta = train.load_checkpoint(path)
    assert np.array_equal(Q["w"], h.params["w"]) and np.allclose(Q["w"], -1.5)
    assert meta["epoch"] == 1 and "non-finite" in meta["stopped"]


# ----------------------------------------------------- fit: generic optimizers, progress, checks


class _Counting(SGD):
    """SGD that reports per-epoch extras through the optional optimizer hooks of fit."""

    def __init__(self, lr):
        super().__init__(lr)
        self.steps, self.log = 0, []

    def step(self, params, grads):
        self.steps += 1
        return super().step(params, grads)

    def begin_epoch(self):
        self.log.append("begin")
        self._mark = self.steps

    def epoch_metrics(self):
        self.log.append("metrics")
        return {"my_steps": self.steps - self._mark, "my_total": self.steps}


def test_fit_takes_extra_epoch_row_entries_from_any_optimizer_and_names_none():
    import ast
    import inspect
    import textwrap

    def grad_fn(P, u, y):
        return 1.0, {"w": backend.asarray(np.ones(2))}
    u, y = _toy_data(16)
    opt = _Counting(0.1)
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=2, batch_size=4, optimizer=opt,
                  clip=10.0, progress=False)
    assert [list(r) for r in h.epochs[1:]] == [["epoch", "train_F", "clip_fired", "my_steps",
                                               "my_total"]] * 2
    assert h.column("my_steps") == [None, 4, 4] and h.column("my_total") == [None, 4, 8]
    assert opt.log == ["begin", "metrics"] * 2
    tree = ast.parse(textwrap.dedent(inspect.getsource(train.fit))).body[0]
    code = ast.unparse(tree.body[1:])  # without the docstring, which may cite examples
    for name in ("angle", "fw_", "FrankWolfe", "isinstance(optimizer"):
        assert name not in code, name  # fit knows the optional hooks, no optimizer by name

    class Bad(SGD):
        def epoch_metrics(self):
            return [1]
    with pytest.raises(TypeError, match="epoch_metrics.. must return a mapping"):
        train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=1, batch_size=4, optimizer=Bad(0.1),
                  progress=False)


def test_fit_checks_its_arguments_before_any_work():
    calls = []

    def grad_fn(P, u, y):
        calls.append(1)
        return 1.0, {"w": backend.asarray(np.ones(2))}
    u, y = _toy_data(16)
    args = dict(epochs=1, batch_size=4, progress=False)
    with pytest.raises(TypeError, match="fit: optimizer must have a step"):
        train.fit({"w": np.zeros(2)}, grad_fn, u, y, optimizer=object(), **args)
    with pytest.raises(TypeError, match="fit: grad_fn must be callable"):
        train.fit({"w": np.zeros(2)}, "rnn", u, y, optimizer=SGD(0.1), **args)
    with pytest.raises(TypeError, match="fit: evaluate must be None or callable"):
        train.fit({"w": np.zeros(2)}, grad_fn, u, y, optimizer=SGD(0.1), evaluate=3, **args)
    with pytest.raises(TypeError, match="fit: params must be a mapping"):
        train.fit([np.zeros(2)], grad_fn, u, y, optimizer=SGD(0.1), **args)
    with pytest.raises(ValueError, match=r"fit: y has 8 examples on axis 0 but u has 16"):
        train.fit({"w": np.zeros(2)}, grad_fn, u, y[:8], optimizer=SGD(0.1), **args)
    assert calls == []


def test_fit_progress_redirected_is_a_few_lines_with_a_summary_per_phase(capsys):
    def grad_fn(P, u, y):
        return 0.25, {"w": backend.asarray(np.ones(2))}
    u, y = _toy_data(1500)

    def ev(P):
        return {"test_error": 0.125}
    for phase in ("phase-a", "phase-b"):
        train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=2, batch_size=1,
                  optimizer=SGD(1e-6), evaluate=ev, desc=phase, progress=True)
    err = capsys.readouterr().err
    assert len(err) < 1500, (len(err), err[:3000])  # 6000 minibatches, no redraw for each
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 2, lines  # one summary line per phase
    for phase, line in zip(("phase-a", "phase-b"), lines):
        assert line.startswith(phase + ": 2/2 epochs, 3000 minibatches"), line
        assert "F=0.25" in line and "error=0.125" in line, line
