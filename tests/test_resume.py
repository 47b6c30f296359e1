"""Runs that lose nothing: fit's full training state, bit-identical resumption, damaged files.

- ``fit(..., state=StateFile(path, resume=True))`` interrupted at any minibatch (an exception
  from ``grad_fn`` after a state write) and taken up again ends with the same bits as a run
  never interrupted: SGD, Adam, Frank-Wolfe (successive and same minibatch, Adam and SGD
  outer), with clipping, with a ``carry`` list, and with more epochs than the state holds;
- a damaged state file is never loaded: the previous one (``.prev``) is used, and with none
  a ValueError names the file; a state of another run is refused, naming what differs;
- ``manualgrad run ltg`` killed with SIGKILL at a random moment and rerun with ``--resume``
  writes the record of an uninterrupted run (timing fields aside).
"""
import functools
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from manualgrad import backend, data, optim, rnn, train
from manualgrad.experiments import options, record

KW = dict(activation="tanh", output="sigmoid", loss="bce")


class Stop(Exception):
    """What the interrupted run raises from grad_fn (a stand-in for a kill)."""


def _problem():
    u, y = data.long_time_gap(n=70, T=6, p=3, informative_step=2, seed=1)
    return u, y, rnn.init_params(3, 5, 1, seed=0)


OPTIMIZERS = {
    "sgd": lambda: optim.SGD(0.2),
    "adam": lambda: optim.Adam(1e-2),
    "fw_successive_adam": lambda: optim.FrankWolfe(0.05, K=3),
    "fw_same_sgd": lambda: optim.FrankWolfe(0.1, K=2, outer="sgd", minibatch="same",
                                            schedule=optim.step_decay(0.5, 2)),
}


def _fit(opt, state=None, stop_at=None, epochs=4, clip=None):
    u, y, P0 = _problem()
    seen = []           # what grad_fn accumulates on the side (carried by the state)
    calls = [0]
    grad = functools.partial(rnn.loss_and_grad, **KW)

    def grad_fn(P, ub, yb):
        calls[0] += 1
        if stop_at is not None and calls[0] == stop_at:
            raise Stop
        F, g = grad(P, ub, yb)
        seen.append(float(F))
        return F, g

    def evaluate(P):
        return {"test_F": float(rnn.loss(P, u, y, **KW)), "n_seen": len(seen)}

    if isinstance(state, dict):
        state = train.StateFile(carry={"seen": seen}, **state)
    hist = train.fit(dict(P0), grad_fn, u, y, epochs=epochs, batch_size=16,
                     optimizer=OPTIMIZERS[opt](), seed=3, evaluate=evaluate, progress=False,
                     clip=clip, state=state)
    return hist, seen, calls[0]


def _same(a, b):
    np = backend.np
    assert a.epochs == b.epochs
    assert set(a.params) == set(b.params)
    for k in a.params:
        x, y = backend.to_numpy(a.params[k]), backend.to_numpy(b.params[k])
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), k
    assert np is not None


@pytest.mark.only_backend("numpy", reason="bit-identity is checked on NumPy float64")
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("stop_at", [3, 6, 11])
def test_an_interrupted_fit_resumes_bit_identically(tmp_path, opt, stop_at):
    clip = 0.5 if opt == "sgd" else None
    ref, ref_seen, _ = _fit(opt, clip=clip)
    path = str(tmp_path / "state.npz")
    with pytest.raises(Stop):
        _fit(opt, dict(path=path, every_minutes=0), stop_at=stop_at, clip=clip)
    assert os.path.exists(path)
    hist, seen, _ = _fit(opt, dict(path=path, resume=True, every_minutes=0), clip=clip)
    assert hist.resumed is not None and not hist.resumed["complete"]
    _same(hist, ref)
    assert seen == ref_seen                   # the carry came back with the state


@pytest.mark.only_backend("numpy", reason="bit-identity is checked on NumPy float64")
def test_a_finished_state_is_returned_at_once_and_can_be_extended(tmp_path):
    path = str(tmp_path / "s.npz")
    first, _, _ = _fit("adam", dict(path=path), epochs=2)
    again, _, calls = _fit("adam", dict(path=path, resume=True), epochs=2)
    assert calls == 0 and again.resumed["complete"]
    _same(again, first)
    longer, _, _ = _fit("adam", dict(path=path, resume=True), epochs=4)
    ref, _, _ = _fit("adam", epochs=4)
    _same(longer, ref)
    with pytest.raises(ValueError, match="holds 4 epochs"):
        _fit("adam", dict(path=path, resume=True), epochs=3)


def test_a_damaged_state_is_never_loaded(tmp_path, capsys):
    path = str(tmp_path / "s.npz")
    _fit("adam", dict(path=path), epochs=3)     # writes s.npz and keeps s.npz.prev
    assert os.path.exists(path + ".prev")
    good = train.load_state(path + ".prev")
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])             # half-written
    with pytest.raises(ValueError, match="s.npz"):
        train.load_state(path)
    st = train.StateFile(path, resume=True).load()           # falls back to .prev
    assert st["_path"] == path + ".prev" and st["epoch"] == good["epoch"]
    assert "previous state file" in capsys.readouterr().err
    flipped = bytearray(open(path + ".prev", "rb").read())
    flipped[len(flipped) // 3] ^= 0xFF                      # a flipped byte inside an entry
    open(path + ".prev", "wb").write(bytes(flipped))
    with pytest.raises(ValueError, match="no usable training state.*s.npz"):
        train.StateFile(path, resume=True).load()
    with pytest.raises(ValueError, match="s.npz"):
        _fit("adam", dict(path=path, resume=True))


def test_a_state_of_another_run_is_refused(tmp_path):
    path = str(tmp_path / "s.npz")
    _fit("adam", dict(path=path, tag="a"), epochs=1)
    with pytest.raises(ValueError, match="another run.*optimizer"):
        _fit("sgd", dict(path=path, resume=True, tag="a"), epochs=1)
    with pytest.raises(ValueError, match="another run.*tag"):
        _fit("adam", dict(path=path, resume=True, tag="b"), epochs=1)


def test_optimizer_state_dicts_round_trip(tmp_path):
    u, y, P = _problem()
    g = rnn.loss_and_grad(P, u, y, **KW)[1]
    for name, make in OPTIMIZERS.items():
        a = make()
        Pa = a.step(dict(P), g)
        path = str(tmp_path / (name + ".npz"))
        train.save_state(path, {"opt": a.state_dict()})
        b = make()
        b.load_state_dict(train.load_state(path)["opt"])
        x, z = a.step(dict(Pa), g), b.step(dict(Pa), g)
        assert all(backend.to_numpy(x[k]).tobytes() == backend.to_numpy(z[k]).tobytes()
                   for k in x), name
    with pytest.raises(ValueError):
        optim.SGD(0.1).load_state_dict({"m": 1})
    with pytest.raises(ValueError, match="K = 2"):
        fw = optim.FrankWolfe(0.1, K=4)
        fw.k = 3
        optim.FrankWolfe(0.1, K=2).load_state_dict(fw.state_dict())


def test_state_files_keep_nan_and_arrays(tmp_path):
    path = str(tmp_path / "x.npz")
    xp = backend.xp()
    st = {"rows": [{"a": float("nan"), "b": float("inf"), "c": 3}], "arr": xp.arange(3.0),
          "nested": {"n": None, "l": [1, 2.5]}}
    back = train.load_state(train.save_state(path, st))
    assert back["rows"][0]["a"] != back["rows"][0]["a"] and back["rows"][0]["b"] == float("inf")
    assert back["rows"][0]["c"] == 3 and isinstance(back["rows"][0]["c"], int)
    assert backend.to_numpy(back["arr"]).tolist() == [0.0, 1.0, 2.0]
    assert back["nested"] == {"n": None, "l": [1, 2.5]}
    with pytest.raises(TypeError, match="state\\['bad'\\]"):
        train.save_state(path, {"bad": object()})


def test_warning_log_counts_and_carries():
    import warnings
    log = options.WarningLog()
    with log:
        warnings.warn("first", RuntimeWarning)
        warnings.warn("second", RuntimeWarning)
    assert log.counts() == {"RuntimeWarning": {"count": 2, "first": "first"}}
    assert log.seen == [["RuntimeWarning", "first"], ["RuntimeWarning", "second"]]


# ------------------------------------------------------------------------------ SIGKILL
LTG_ARGS = ["--method", "both", "--n", "400", "--n-test", "100", "--T", "12", "--hidden", "8",
            "--epochs", "8", "--batch-size", "16", "--no-progress", "--checkpoint-minutes", "0"]


def _run_ltg(out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.Popen([sys.executable, "-m", "manualgrad.cli", "run", "ltg", *LTG_ARGS,
                             "--out", str(out), *extra], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _comparable(folder):
    return record.comparable(record.load(str(folder)))


def _kill_and_resume(tmp_path, ref, rng, name):
    out = tmp_path / name
    proc = _run_ltg(out)
    t0 = time.monotonic()
    while not (out / "checkpoints").is_dir() or not os.listdir(out / "checkpoints"):
        if proc.poll() is not None or time.monotonic() - t0 > 60:
            break
        time.sleep(0.02)
    train_s = ref["wall_time_s"]
    delay = rng.uniform(0.0, 0.9 * train_s)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists() or not killed
    again = _run_ltg(out, "--resume")
    err = again.communicate(timeout=300)[1]
    assert again.returncode == 0, err
    assert _comparable(out) == record.comparable(ref), "killed %.2f s into training" % delay
    assert (out / "history.csv").read_text() == (tmp_path / "ref" / "history.csv").read_text()
    return killed


def _reference(tmp_path):
    proc = _run_ltg(tmp_path / "ref")
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, err
    return record.load(str(tmp_path / "ref"))


@pytest.mark.only_backend("numpy", reason="runs the console script on NumPy")
def test_a_run_killed_at_a_random_moment_resumes_to_the_same_record(tmp_path):
    ref = _reference(tmp_path)
    assert not (tmp_path / "ref" / "checkpoints").exists()   # removed once the record is there
    seed = random.randrange(1 << 30)
    _kill_and_resume(tmp_path, ref, random.Random(seed), "killed")


@pytest.mark.slow
@pytest.mark.only_backend("numpy", reason="runs the console script on NumPy")
def test_runs_killed_at_many_random_moments_all_resume_to_the_same_record(tmp_path):
    ref = _reference(tmp_path)
    rng = random.Random(12345)
    killed = sum(_kill_and_resume(tmp_path, ref, rng, "killed%d" % i) for i in range(6))
    assert killed >= 3
