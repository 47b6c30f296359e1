"""``manualgrad report`` and the records it reads: grouping over seeds, mean and spread, tables,
figures, repeatability of a run, and the errors a user can meet.

Hand-made records (written with record.py) have known numbers; the LTG experiment's TINY setting
gives real records in about a second each.
"""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from manualgrad import backend, cli
from manualgrad.experiments import ltg, record, report

LTG_ARGV = ["run", "ltg", "--n", "120", "--n-test", "40", "--T", "8", "--hidden", "5",
            "--epochs", "2", "--no-progress"]


def _hand_record(out, seed, err, loss, lr=0.1, experiment="toy"):
    """A record of experiment ``toy``: run "a" with rows epoch 0..len(err)-1, run "b" constant."""
    rec = record.new_record(experiment, {"lr": lr, "seed": seed, "out": str(out),
                                         "progress": False})
    rows = [{"epoch": e, "err": v, "loss": l, "ok": e > 0, "note": "text"}
            for e, (v, l) in enumerate(zip(err, loss))]
    record.add_run(rec, "a", rows, wall_time_s=1.0 + seed)
    record.add_run(rec, "b", [{"epoch": 0, "err": 0.5}, {"epoch": 1, "err": 0.25}])
    record.finish(rec, str(out), wall_time_s=3.0 + seed)
    return rec


def _three_seeds(tmp_path):
    errs = {0: [0.5, 0.4, 0.3], 1: [0.5, 0.2, 0.1], 2: [0.5, 0.3, 0.2]}
    for s, e in errs.items():
        _hand_record(tmp_path / "toy" / ("seed%d" % s), s, e, [1.0, 0.1 * (s + 1), None])
    return errs


# ------------------------------------------------------------------------------ statistics
def test_stats_mean_sample_std_min_max_and_nonfinite():
    st = report.stats([1.0, 2.0, 3.0])
    assert st == {"n": 3, "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "nonfinite": 0}
    st = report.stats([4.0, None, float("nan"), float("inf")])
    assert st["n"] == 1 and st["mean"] == 4.0 and st["std"] is None and st["nonfinite"] == 3
    assert report.stats([None])["mean"] is None
    assert report.format_stats(report.stats([0.1, 0.3])) == "0.2 ± 0.14 (2 seeds)"
    assert report.format_stats(report.stats([0.25])) == "0.25 (1 seed)"
    assert report.format_stats(report.stats([None, None])) == "- (no finite value of 2)"


@settings(max_examples=40)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.none(), st.just(float("nan"))), max_size=8))
def test_stats_agree_with_numpy_on_the_finite_values(values):
    got = report.stats(values)
    finite = np.array([v for v in values if v is not None and math.isfinite(v)])
    assert got["n"] == finite.size and got["nonfinite"] == len(values) - finite.size
    if finite.size:
        assert got["mean"] == pytest.approx(finite.mean(), rel=1e-12, abs=1e-9)
        assert got["min"] == finite.min() and got["max"] == finite.max()
        assert got["min"] <= got["mean"] + 1e-9 and got["mean"] <= got["max"] + 1e-9
    if finite.size > 1:
        assert got["std"] == pytest.approx(finite.std(ddof=1), rel=1e-9, abs=1e-9)
    else:
        assert got["std"] is None


def test_record_helpers_group_key_comparable_metric_names(tmp_path):
    a = _hand_record(tmp_path / "a", 0, [0.5, 0.4], [1.0, 0.5])
    b = _hand_record(tmp_path / "b", 7, [0.5, 0.4], [1.0, 0.5])
    c = _hand_record(tmp_path / "c", 0, [0.5, 0.4], [1.0, 0.5], lr=0.2)
    assert record.group_key(a) == record.group_key(b) != record.group_key(c)
    assert "out" not in a["settings"] and a["seed"] == 0
    assert record.run_rows(a["runs"]["a"])[0] == "epoch"
    assert record.metric_names(a["runs"]["a"]) == ["err", "loss", "ok"]     # "note" is text
    la, lb = record.load(tmp_path / "a"), record.load(tmp_path / "a" / "results.json")
    assert la["_path"] == lb["_path"] and la["runs"] == a["runs"]
    assert record.comparable(la) == record.comparable(a)     # wall times, created, argv dropped
    assert "wall_time_s" not in record.comparable(a)["runs"]["a"]
    assert record.comparable(a) != record.comparable(b)      # the seed differs


# ------------------------------------------------------------------------------ hand-made records
def test_hand_made_records_aggregate_to_the_known_numbers(tmp_path, capsys):
    errs = _three_seeds(tmp_path)
    _hand_record(tmp_path / "toy" / "other", 0, [0.9, 0.8, 0.7], [1, 1, 1], lr=0.5)
    out = tmp_path / "rep"
    assert cli.main(["report", str(tmp_path / "toy"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["groups"]) == 2
    g = next(x for x in rep["groups"] if x["settings"]["lr"] == 0.1)
    assert g["seeds"] == [0, 1, 2] and g["experiment"] == "toy" and len(g["records"]) == 3
    curve = g["runs"]["a"]["metrics"]["err"]
    assert curve["epoch"] == [0, 1, 2] and curve["n"] == [3, 3, 3]
    for e in range(3):
        vals = [errs[s][e] for s in range(3)]
        m = sum(vals) / 3
        assert curve["mean"][e] == pytest.approx(m, abs=1e-15)
        assert curve["min"][e] == min(vals) and curve["max"][e] == max(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / 2)
        assert curve["std"][e] == pytest.approx(sd, abs=1e-15)
    # loss is null (NaN) at the last epoch of every seed: not counted, the final value is null
    assert g["runs"]["a"]["metrics"]["loss"]["n"] == [3, 3, 0]
    fin = g["final"]["a"]
    assert fin["err"]["mean"] == pytest.approx(0.2) and fin["err"]["std"] == pytest.approx(0.1)
    assert fin["err"]["seeds"] == [0, 1, 2] and fin["err"]["epochs"] == [2, 2, 2]
    assert fin["loss"]["n"] == 0 and fin["loss"]["nonfinite"] == 3
    assert fin["ok"]["mean"] == 1.0                          # bools count as 0/1
    assert "note" not in g["runs"]["a"]["metrics"]           # text is not a metric
    assert g["final"]["b"]["err"]["mean"] == 0.25 and g["final"]["b"]["err"]["std"] == 0.0
    md = (out / "report.md").read_text()
    assert "| metric (final epoch) | a | b |" in md
    assert "| err | 0.2 ± 0.1 (3 seeds) | 0.25 ± 0 (3 seeds) |" in md
    assert "| err | 0.7 (1 seed) | 0.25 (1 seed) |" in md
    assert "Differs from the other toy groups in: `lr=0.5`" in md
    assert "0.2 ± 0.1 (3 seeds)" in printed
    for f in g["figures"]:
        assert (out / f).stat().st_size > 1000 and "![" in md and f in md
    assert sorted(g["figures"]) == sorted("%s-%s.png" % (g["id"], m) for m in ("err", "loss", "ok"))


def test_a_seed_that_stopped_early_counts_where_it_has_rows(tmp_path):
    _hand_record(tmp_path / "s0", 0, [0.5, 0.4, 0.3], [1, 1, 1])
    _hand_record(tmp_path / "s1", 1, [0.5, 0.2], [1, 1])              # stopped after epoch 1
    rep = report.make_report([tmp_path / "s0", tmp_path / "s1" / "results.json"],
                             out=tmp_path / "rep", verbose=False, figures=False)
    g = rep["groups"][0]
    assert g["runs"]["a"]["metrics"]["err"]["n"] == [2, 2, 1]
    assert g["final"]["a"]["err"]["values"] == [0.3, 0.2]
    assert g["final"]["a"]["err"]["epochs"] == [2, 1]
    assert "Final epoch reached: 1, 2." in (tmp_path / "rep" / "report.md").read_text()
    assert rep["figures"] == []


def test_metric_option_keeps_only_that_metric(tmp_path, capsys):
    _three_seeds(tmp_path)
    out = tmp_path / "rep"
    assert cli.main(["report", str(tmp_path / "toy"), "--out", str(out), "--metric", "err"]) == 0
    rep = json.loads((out / "report.json").read_text())
    g = rep["groups"][0]
    assert set(g["runs"]["a"]["metrics"]) == {"err"} and len(g["figures"]) == 1
    assert cli.main(["report", str(tmp_path / "toy"), "--out", str(out), "--metric", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "metric 'nosuch' is in none of the 3 record(s)" in err and "err, loss, ok" in err


def test_records_without_rows_and_several_experiments(tmp_path):
    rec = record.new_record("empty", {"seed": 0})
    record.finish(rec, str(tmp_path / "e"), 0.0)
    _hand_record(tmp_path / "t", 0, [0.5], [1.0])
    rep = report.make_report(tmp_path, out=tmp_path / "rep", verbose=False)
    assert [g["experiment"] for g in rep["groups"]] == ["empty", "toy"]
    assert rep["groups"][0]["runs"] == {} and rep["groups"][0]["figures"] == []
    assert "(no per-epoch metrics in these records)" in (tmp_path / "rep" / "report.md").read_text()


# ------------------------------------------------------------------------------ errors
def test_errors_are_clear_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no results.json" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nosuch")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad" / "results.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"a": 1}))
    assert cli.main(["report", str(bad.parent)]) == 2
    assert "is not a manualgrad results record" in capsys.readouterr().err
    bad.write_text(json.dumps({"experiment": "x", "runs": [1, 2]}))
    assert cli.main(["report", str(bad)]) == 2
    assert "'runs' must map each run label" in capsys.readouterr().err
    bad.write_text("{not json")
    assert cli.main(["report", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:               # RESULTS is required
        cli.main(["report"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "nosuch"])
    assert exc.value.code == 2
    assert "unknown experiment 'nosuch': valid names are" in capsys.readouterr().err


# ------------------------------------------------------------------------------ real records
def test_ltg_tiny_three_seeds_report_matches_the_records(tmp_path, capsys):
    for s in (0, 1, 2):
        assert cli.main(LTG_ARGV + ["--seed", str(s), "--out", str(tmp_path / "ltg" / str(s))]) == 0
    capsys.readouterr()
    out = tmp_path / "rep"
    assert cli.main(["report", str(tmp_path / "ltg"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["groups"]) == 1
    g = rep["groups"][0]
    assert g["experiment"] == "ltg" and g["seeds"] == [0, 1, 2]
    assert set(g["runs"]) == {"adjoint", "coadjoint", "lstm"}
    recs = [record.load(tmp_path / "ltg" / str(s)) for s in (0, 1, 2)]
    for r in recs:
        assert r["seed"] == r["settings"]["seed"] and r["backend"] == backend.get_backend()
        assert r["versions"]["manualgrad"] and r["figures"] == ["test_error.png",
                                                                "adjoint_norms.png"]
        assert r["wall_time_s"] > 0 and r["summary"]["adjoint"]["test_error"] >= 0
    for m in ("adjoint", "coadjoint", "lstm"):
        vals = [r["runs"][m]["epochs"][-1]["test_error"] for r in recs]
        st = g["final"][m]["test_error"]
        assert st["mean"] == pytest.approx(sum(vals) / 3, abs=1e-15)
        assert st["min"] == min(vals) and st["max"] == max(vals)
        assert report.format_stats(st) in printed
    assert "%s-test_error.png" % g["id"] in rep["figures"]
    assert (out / ("%s-test_error.png" % g["id"])).stat().st_size > 1000


def test_the_same_tiny_command_twice_gives_the_same_record(tmp_path, capsys):
    for name in ("a", "b"):
        assert cli.main(LTG_ARGV + ["--method", "all", "--out", str(tmp_path / name)]) == 0
    capsys.readouterr()
    a, b = record.load(tmp_path / "a"), record.load(tmp_path / "b")
    assert a["wall_time_s"] != b["wall_time_s"] or a["created"] == b["created"]
    assert record.comparable(a) == record.comparable(b)
    assert a["runs"]["coadjoint"]["epochs"] == b["runs"]["coadjoint"]["epochs"]


def test_quick_option_makes_quick_the_defaults_and_explicit_options_win():
    s = cli.experiment_settings("ltg", ltg, ["--quick"])
    assert s["epochs"] == ltg.QUICK["epochs"] and "quick" not in s
    s = cli.experiment_settings("ltg", ltg, ["--quick", "--epochs", "3", "--seed", "4"])
    assert s["epochs"] == 3 and s["seed"] == 4
    s = cli.experiment_settings("ltg", ltg, [])
    assert s["epochs"] == ltg.DEFAULTS["epochs"] and "quick" not in s
