"""The adjoint-norm comparison across cells (issue item 7): files, curves, options, errors.

Tiny settings (n = 64, T = 8, m = 4, one epoch, two cells) so the file runs in a few seconds;
the numbers of the real run are in docs/norms.md.
"""
import argparse
import json
import math

import pytest

from manualgrad import cells
from manualgrad.experiments import norms

TINY = dict(cells=["rnn", "lstm"], n=64, n_test=16, T=8, hidden=4, epochs=1, batch_size=16,
            progress=False)


def test_tiny_run_writes_one_finite_positive_curve_per_cell_and_phase(tmp_path, capsys):
    rec = norms.run(out=str(tmp_path), **TINY)
    printed = capsys.readouterr().out
    assert (tmp_path / "norms_ltg.png").stat().st_size > 1000
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["cells"] == ["rnn", "lstm"] == rec["cells"]
    assert sorted(on_disk["runs"]) == ["lstm", "rnn"]
    assert on_disk["steps"] == [1, 2, 4, 6, 8]
    for name, r in on_disk["runs"].items():
        assert [row["epoch"] for row in r["epochs"]] == [0, 1]
        for phase in ("init", "trained"):
            curve = r[phase]["norms"]
            assert len(curve) == TINY["T"]
            assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in curve)
            assert r[phase]["ratio"] == pytest.approx(curve[0] / curve[-1])
            assert 0.0 <= r[phase]["test_error"] <= 1.0
            assert len(r[phase]["zero_frac"]) == TINY["T"]
        assert r["init"]["norms"] != r["trained"]["norms"]          # training moved the params
        assert r["epochs"][0]["lam1"] == r["init"]["norms"][0]       # epoch 0 is the init
        assert r["epochs"][1]["lamT"] == r["trained"]["norms"][-1]   # the last epoch, trained
        assert "%-14s %-9s" % (name, "init") in printed
    assert set(on_disk["runs"]["lstm"]["init"]["extra"]) == {"lam_c"}   # the cell-state adjoint
    assert on_disk["runs"]["rnn"]["init"]["extra"] == {}
    assert on_disk["settings"]["cell_options"] == {"rnn": {"activation": "tanh"}, "lstm": {}}


def test_same_seed_same_numbers_and_the_cells_share_the_test_data(tmp_path):
    a = norms.run(out=str(tmp_path / "a"), verbose=False, **dict(TINY, cells="rnn"))
    b = norms.run(out=str(tmp_path / "b"), verbose=False, **dict(TINY, cells="rnn"))
    assert a["runs"]["rnn"]["trained"]["norms"] == b["runs"]["rnn"]["trained"]["norms"]


def test_cell_options_are_routed_to_init_params_and_sweep():
    assert norms.split_options("rnn", {"activation": "relu", "scale": 0.5}) == (
        {"scale": 0.5}, {"activation": "relu"})                     # the adapter: **options
    assert norms.split_options("lstm", {"forget_bias": 1.0}) == ({"forget_bias": 1.0}, {})
    assert norms.split_options("indrnn", {"activation": "relu", "recurrent_init": 1.0}) == (
        {"recurrent_init": 1.0}, {"activation": "relu"})
    if "momentum_rnn" in cells.names():                              # checked by both
        init, sweep = norms.split_options("momentum_rnn", {"mu": 0.3, "s": 1.0})
        assert init == sweep == {"mu": 0.3, "s": 1.0}
    with pytest.raises(ValueError, match="unknown option 'mu' for cell 'lstm': valid are"):
        norms.split_options("lstm", {"mu": 0.5})
    with pytest.raises(ValueError, match="'seed' of 'rnn' is set by the experiment"):
        norms.split_options("rnn", {"seed": 3})


def test_unknown_cell_raises_value_error_listing_the_valid_cells(tmp_path):
    valid = ", ".join(cells.names())
    for bad in (dict(cells=["rnn", "elman"]), dict(cells="rnn,elman"),
                dict(cell_options={"elman": {"activation": "tanh"}})):
        with pytest.raises(ValueError, match="unknown cell 'elman': valid names are %s" % valid):
            norms.run(out=str(tmp_path), verbose=False, **dict(TINY, **bad))
    assert not (tmp_path / "results.json").exists()                 # failed before training
    with pytest.raises(ValueError, match="listed twice"):
        norms.check_settings(cells=["rnn", "rnn"])
    with pytest.raises(ValueError, match="cells is empty"):
        norms.check_settings(cells=[])
    with pytest.raises(ValueError, match="n_test must be smaller"):
        norms.check_settings(n=10, n_test=10)
    with pytest.raises(TypeError, match="unknown norms setting"):
        norms.check_settings(nosuch=1)


def test_arguments_parse_to_settings_run_accepts():
    p = argparse.ArgumentParser()
    norms.add_arguments(p)
    args = vars(p.parse_args(["--cells", "rnn", "lstm", "--cell-options",
                              '{"lstm": {"forget_bias": 1}}', "--epochs", "2", "--no-progress"]))
    assert set(args) == set(norms.DEFAULTS)
    s = norms.check_settings(**args)
    assert s["cells"] == ("rnn", "lstm") and s["epochs"] == 2 and not s["progress"]
    assert s["cell_options"]["lstm"] == {"forget_bias": 1}
    args = vars(p.parse_args(["--cells", "rnn,lstm", "indrnn"]))
    assert norms.check_settings(**args)["cells"] == ("rnn", "lstm", "indrnn")
    assert norms.check_settings(**vars(p.parse_args([])))["cells"] == cells.names()
    with pytest.raises(SystemExit):
        p.parse_args(["--cell-options", "not json"])
