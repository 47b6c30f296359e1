"""Every registered experiment keeps the contract of ``manualgrad run`` and ``manualgrad report``.

For each name in REGISTRY: the module has a docstring summary, DEFAULTS, QUICK and TINY dicts
(keys among DEFAULTS), ``add_arguments`` (every option a setting; ``--seed``, ``--out``,
``--overwrite``, ``--no-progress``, ``--quick``) and ``run``; ``run`` with the TINY settings
writes ``results.json`` records (in ``out`` or below it, one per seed) that ``record.load``
reads, with the keys the report needs and their figures beside them; the same TINY run twice
gives the same records (except wall times and dates); and a report can be made from them.
New experiments are covered as soon as they are registered.
"""
import argparse
import inspect
import os

import pytest

from manualgrad import cli
from manualgrad.experiments import REGISTRY, record, report

NAMES = list(REGISTRY)


def _parser(mod):
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return p


def test_run_list_prints_one_line_per_experiment(capsys):
    assert cli.main(["run", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(REGISTRY)
    for line, (name, mod) in zip(lines, REGISTRY.items()):
        assert line.split()[0] == name
        assert line.endswith(mod.__doc__.strip().splitlines()[0].strip())


@pytest.mark.parametrize("name", NAMES)
def test_module_has_the_experiment_interface(name):
    mod = REGISTRY[name]
    doc = (mod.__doc__ or "").strip()
    assert doc and doc.splitlines()[0].strip(), "%s: the module docstring's first line is the " \
                                                "summary of 'run --list'" % name
    for attr in ("DEFAULTS", "QUICK", "TINY"):
        assert isinstance(getattr(mod, attr, None), dict), "%s.%s must be a dict" % (name, attr)
    assert set(mod.QUICK) <= set(mod.DEFAULTS), set(mod.QUICK) - set(mod.DEFAULTS)
    assert set(mod.TINY) <= set(mod.DEFAULTS), set(mod.TINY) - set(mod.DEFAULTS)
    assert {"seed", "out", "progress"} <= set(mod.DEFAULTS)
    assert callable(mod.add_arguments) and callable(mod.run)
    assert inspect.signature(mod.run).parameters["overwrite"].default is False
    args = vars(_parser(mod).parse_args([]))
    assert {"seed", "out", "progress"} <= set(args)
    assert set(args) - {"quick"} <= set(mod.DEFAULTS), set(args) - set(mod.DEFAULTS)
    assert not vars(_parser(mod).parse_args(["--no-progress"]))["progress"]
    assert vars(_parser(mod).parse_args(["--overwrite"]))["overwrite"] is True
    s = cli.experiment_settings(name, mod, ["--quick", "--seed", "3"])
    assert s["seed"] == 3
    for k, v in mod.QUICK.items():
        assert s[k] == v, (name, k)
    assert set(s) - {"quick"} <= set(mod.DEFAULTS)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_writes_a_repeatable_record_and_a_report_can_be_made(name, tmp_path):
    """Records may sit in ``out`` or below it (an experiment over several seeds writes one per
    seed); every one is checked, and the two runs must give the same records."""
    mod = REGISTRY[name]
    found = {}
    for k in ("a", "b"):
        out = tmp_path / k
        mod.run(**dict(mod.DEFAULTS, **mod.TINY, out=str(out), progress=False), verbose=False)
        files = record.find_records(out)
        assert files, "%s: no results.json under %s" % (name, out)
        found[k] = {os.path.relpath(f, out): record.load(f) for f in files}
    assert sorted(found["a"]) == sorted(found["b"])
    for rel, rec in found["a"].items():
        assert rec["experiment"] == name
        for key in ("settings", "seed", "versions", "backend", "dtype", "runs", "wall_time_s",
                    "created", "figures"):
            assert key in rec, "%s: %s lacks %r (build it with record.py)" % (name, rel, key)
        assert isinstance(rec["seed"], int) and rec["seed"] == rec["settings"].get("seed")
        assert "out" not in rec["settings"] and "progress" not in rec["settings"]
        assert rec["versions"]["manualgrad"] and rec["versions"]["numpy"]
        assert rec["runs"], "%s: %s has no runs" % (name, rel)
        metrics = {m for run in rec["runs"].values() for m in record.metric_names(run)}
        assert metrics, "%s: no run of %s has per-epoch metric rows" % (name, rel)
        for f in rec["figures"]:
            assert os.path.getsize(os.path.join(os.path.dirname(rec["_path"]), f)) > 1000, \
                (name, rel, f)
        assert record.comparable(rec) == record.comparable(found["b"][rel]), \
            "%s: the same TINY run twice gave different records (%s)" % (name, rel)
    rep = report.make_report([tmp_path / "a", tmp_path / "b"], out=tmp_path / "rep",
                             verbose=False)
    keys = {record.group_key(r) for r in found["a"].values()}
    assert len(rep["groups"]) == len(keys)
    assert sum(len(g["records"]) for g in rep["groups"]) == 2 * len(found["a"])
    assert rep["figures"] and (tmp_path / "rep" / "report.md").stat().st_size > 100
    for g in rep["groups"]:
        for f in g["figures"]:
            assert (tmp_path / "rep" / f).stat().st_size > 1000


def test_unknown_experiment_exits_2_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "no_such_experiment"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'no_such_experiment'" in err
    assert all(name in err for name in REGISTRY)
