"""The MNIST-1D experiment (experiments/mnist1d.py): records, summary, figures, resume, settings.

The experiment reads MNIST-1D through ``data.load("mnist1d")``. When the mnist1d package is
installed the tests use it (TINY keeps a stratified 60 / 30 subset); otherwise a small fake
``mnist1d`` module stands in (400 sequences of 40 steps whose class shifts the mean), so these
tests run everywhere; the one test that needs the real data is skipped with the reason.
The numbers of the real run are in docs/mnist1d.md.
"""
import argparse
import json
import math
import sys
import types

import numpy as np
import pytest

from manualgrad import backend, data
from manualgrad.data import registry
from manualgrad.experiments import methods, mnist1d, record

REAL = {d["name"]: d for d in data.datasets()}["mnist1d"]["available"]
TINY = dict(mnist1d.TINY, progress=False)


def _fake_package():
    """A stand-in ``mnist1d`` package: 320 train / 80 test sequences of 40 steps, 10 classes;
    ``shuffle_seq`` shuffles each sequence's steps, as the real one does."""
    def get_dataset_args(as_dict=False):
        d = {"num_samples": 400, "train_split": 0.8, "shuffle_seq": False, "seed": 42}
        return d if as_dict else types.SimpleNamespace(**d)

    def make_dataset(args):
        rng = np.random.default_rng(args.seed)
        y = np.arange(400) % 10
        x = rng.standard_normal((400, 40)) + np.sin(np.arange(40)[None] * (1 + y[:, None]) / 7)
        if args.shuffle_seq:
            x = np.stack([row[rng.permutation(40)] for row in x])
        return {"x": x[:320], "y": y[:320], "x_test": x[320:], "y_test": y[320:]}

    pkg = types.ModuleType("mnist1d")
    pkg.data = types.SimpleNamespace(get_dataset_args=get_dataset_args, make_dataset=make_dataset)
    return pkg


@pytest.fixture(autouse=True)
def mnist1d_source(monkeypatch):
    """The real mnist1d package when installed, else the fake one."""
    if not REAL:
        monkeypatch.setitem(sys.modules, "mnist1d", _fake_package())
        monkeypatch.setattr(registry, "_MNIST1D_CACHE", {})
    return REAL


def test_tiny_run_writes_per_seed_records_summary_and_figures(tmp_path, capsys):
    out = tmp_path / "out"
    summ = mnist1d.run(out=str(out), **TINY)
    printed = capsys.readouterr().out
    for f in ("summary.json", "mnist1d.md", "mnist1d_curves.png", "mnist1d_adjoint_norms.png"):
        assert (out / f).is_file(), f
    assert (out / "mnist1d_curves.png").stat().st_size > 1000
    files = record.find_records(out)
    assert [p.split(str(out))[1] for p in files] == ["/plain/seed_0/results.json",
                                                     "/shuffled/seed_0/results.json"]
    for variant in mnist1d.VARIANTS:
        rec = record.load(out / variant / "seed_0")
        assert rec["experiment"] == "mnist1d" and rec["settings"]["variant"] == variant
        assert rec["data"]["n_train"] == 60 and rec["data"]["n_test"] == 30
        assert rec["data"]["T"] == 40 and rec["data"]["p"] == 1
        assert rec["data"]["shuffled"] is (variant == "shuffled")
        assert list(rec["runs"]) == list(mnist1d.METHODS)
        for method, run in rec["runs"].items():
            rows = run["epochs"]
            assert [r["epoch"] for r in rows] == [0, 1]
            assert all(0.0 <= r["test_acc"] <= 1.0 and math.isfinite(r["test_F"]) for r in rows)
            assert math.isfinite(rows[1]["train_F"])
            assert len(run["norms_by_epoch"]) == 2
            assert all(len(n) == 40 and all(math.isfinite(v) and v >= 0 for v in n)
                       for n in run["norms_by_epoch"])
            assert rows[1]["lam1"] == run["norms_by_epoch"][1][0]
            assert rows[1]["lamT"] == run["norms_by_epoch"][1][-1]
            assert ("train_G" in rows[1]) == (method == "coadjoint")
            assert run["cell"] == ("rnn" if method == "coadjoint" else method)
        # the coadjoint RNN starts from the adjoint RNN's weights
        assert rec["runs"]["coadjoint"]["epochs"][0]["test_F"] == \
            rec["runs"]["rnn"]["epochs"][0]["test_F"]
        assert set(rec["runs"]["lstm"]["extra_final"]) == {"lam_c"}
        assert rec["runs"]["momentum_rnn"]["options"]["sweep"]["mu"] == 0.6
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["aggregate"] is True and set(on_disk["cells"]) == {"plain", "shuffled"}
    cell = on_disk["cells"]["plain"]["gru"]
    assert cell["seeds"] == [0] and cell["test_acc"]["n"] == 1
    assert cell["test_acc"]["mean"] == on_disk["summary"]["plain/gru"]["test_acc"]
    assert set(cell["relative_norms"]) == {"0", "1"}
    assert cell["relative_norms"]["1"][-1] == pytest.approx(1.0)     # lambda_T / lambda_T
    assert summ["paper"]["plain"]["GRU"] == 0.91
    md = (out / "mnist1d.md").read_text()
    assert "| paper: GRU | 91 % | 57 % |" in md and "| coadjoint |" in md
    assert "paper: CNN" in printed


def test_resume_keeps_finished_records_and_refuses_other_settings(tmp_path):
    out = str(tmp_path / "out")
    small = dict(TINY, variants="plain", methods="rnn,indrnn")
    mnist1d.run(out=out, verbose=False, **small)
    first = record.load(tmp_path / "out" / "plain" / "seed_0")
    with pytest.raises(FileExistsError, match="overwrite"):
        mnist1d.run(out=out, verbose=False, **small)
    summ = mnist1d.run(out=out, verbose=False, resume=True, **dict(small, seeds=(0, 1)))
    again = record.load(tmp_path / "out" / "plain" / "seed_0")
    assert again["created"] == first["created"] and again["runs"] == first["runs"]
    assert (tmp_path / "out" / "plain" / "seed_1" / "results.json").is_file()
    assert summ["cells"]["plain"]["rnn"]["seeds"] == [0, 1]
    with pytest.raises(ValueError, match="other settings"):
        mnist1d.run(out=out, verbose=False, resume=True, **dict(small, hidden=5))
    # write_summary redraws the aggregate from the records on disk
    redo = mnist1d.write_summary(out, [tmp_path / "out" / "plain" / ("seed_%d" % s)
                                       for s in (0, 1)], verbose=False)
    assert redo["cells"]["plain"]["indrnn"]["test_acc"] == \
        summ["cells"]["plain"]["indrnn"]["test_acc"]


@pytest.mark.parametrize("bad, exc, word", [
    (dict(methods="rnn,elman"), ValueError, "methods"),
    (dict(methods=5), TypeError, "methods"),
    (dict(variants="permuted"), ValueError, "variants"),
    (dict(seeds="0,x"), ValueError, "seeds"),
    (dict(seeds=(0, 0)), ValueError, "seeds"),
    (dict(seeds=()), ValueError, "seeds"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(hidden=0), ValueError, "hidden"),
    (dict(hidden=2.5), TypeError, "hidden"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer"),
    (dict(clip=-1.0), ValueError, "clip"),
    (dict(G="G99"), ValueError, "G99"),
    (dict(G=3), TypeError, "G"),
    (dict(alpha=-0.1), ValueError, "alpha"),
    (dict(n_train=5), ValueError, "n_train"),
    (dict(normalize="minmax"), ValueError, "normalize"),
    (dict(eval_chunk=0), ValueError, "eval_chunk"),
    (dict(cell_options={"elman": {}}), ValueError, "elman"),
    (dict(cell_options={"lstm": {"mu": 0.5}}), ValueError, "'mu' for cell 'lstm'"),
    (dict(cell_options={"rnn": {"seed": 1}}), ValueError, "seed"),
    (dict(cell_options=[1]), TypeError, "cell_options"),
    (dict(speed=1), TypeError, "speed"),
])
def test_bad_settings_name_the_setting_before_any_work(bad, exc, word, tmp_path):
    with pytest.raises(exc, match=word):
        mnist1d.run(out=str(tmp_path / "o"), verbose=False, **dict(TINY, **bad))
    assert not (tmp_path / "o").exists()


def test_settings_defaults_and_command_line():
    s = mnist1d.check_settings()
    assert s["methods"] == mnist1d.METHODS and s["variants"] == ("plain", "shuffled")
    assert s["seeds"] == (0, 1, 2) and s["cell_options"]["indrnn"] == {"activation": "relu"}
    assert mnist1d.check_settings(seed=4)["seeds"] == (4,)
    assert mnist1d.check_settings(methods="coadjoint")["cell_options"] == {
        "rnn": {"activation": "tanh"}}
    p = argparse.ArgumentParser()
    mnist1d.add_arguments(p)
    ns = vars(p.parse_args(["--seeds", "0,2", "--variants", "shuffled", "--methods", "gru,rnn",
                            "--cell-options", '{"lstm": {"forget_bias": 1.0}}', "--resume",
                            "--clip", "2", "--quick"]))
    assert ns.pop("quick") is True and set(ns) <= set(mnist1d.DEFAULTS)
    s = mnist1d.check_settings(**ns)
    assert s["seeds"] == (0, 2) and s["variants"] == ("shuffled",)
    assert s["methods"] == ("gru", "rnn") and s["resume"] is True and s["clip"] == 2.0
    assert s["cell_options"] == {"gru": {}, "rnn": {"activation": "tanh"}}


def test_cell_metrics_in_chunks_equal_one_sweep():
    """The shared evaluation (methods.cell_metrics) does not depend on the chunk size."""
    (u, y), _ = data.load("mnist1d", n_train=30, n_test=10)
    for name in ("rnn", "lstm"):
        from manualgrad import cells
        P = cells.get(name).init_params(1, 5, 10, seed=1)
        a = methods.cell_metrics(name, P, u, y, output="softmax", loss="cross_entropy")
        b = methods.cell_metrics(name, P, u, y, chunk=7, output="softmax",
                                 loss="cross_entropy")
        assert a["F"] == pytest.approx(b["F"], rel=1e-12) and a["error"] == b["error"]
        np.testing.assert_allclose(a["norms"], b["norms"], rtol=1e-12)
        assert a["norms"].shape == (40,) and set(a["extra"]) == set(b["extra"])


@pytest.mark.skipif(not REAL, reason="the mnist1d package is not installed (pip install "
                                     "'.[data]'); the other tests ran on a fake")
def test_real_variants_share_labels_and_differ_in_inputs():
    s = mnist1d.check_settings()
    (plain, _), info = mnist1d.make_data("plain", s)
    (shuf, _), info_s = mnist1d.make_data("shuffled", s)
    assert info["n_train"] == 4000 and info["n_test"] == 1000 and info["T"] == 40
    assert info_s["shuffled"] is True and info["shuffled"] is False
    assert np.array_equal(backend.to_numpy(plain[1]), backend.to_numpy(shuf[1]))
    assert not np.allclose(backend.to_numpy(plain[0]), backend.to_numpy(shuf[0]))
