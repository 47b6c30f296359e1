"""The ``manualgrad`` console script: help, validation before work, refusing to overwrite.

- ``run --help`` and ``study --help`` print their usage and exit 0; ``run NAME --help`` is plain
  text (no Sphinx roles, no double backticks, no internal notes);
- an unusable ``--out`` (under a regular file, not writable) is a clear error before training;
- a run refuses a results folder that already holds a record unless ``--overwrite``
  (``run(..., overwrite=True)`` from Python); the CLI says so in one line and exits 2;
- ``run imdb --synthetic --quick`` fits QUICK's sizes to the synthetic corpus;
- the study's progress bar redraws a few times per second at most and leaves one line.
"""
import json
import os
import re

import pytest

from manualgrad import cli, train
from manualgrad.experiments import REGISTRY, imdb, ltg, record, study, table2

MARKUP = re.compile(r":(func|data|mod|class|meth|attr|math):`|``|Issue item|item \d+\.")
LTG_TINY = ["--n", "120", "--n-test", "40", "--T", "8", "--hidden", "5", "--epochs", "1",
            "--method", "adjoint", "--no-progress"]


def _no_training(monkeypatch):
    """Make any training fail loudly: what is checked must be checked before it."""
    def fit(*a, **k):
        raise AssertionError("training started before the check")
    monkeypatch.setattr(train, "fit", fit)


# ------------------------------------------------------------------------------ help
def test_run_help_prints_the_usage_and_exits_0(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: manualgrad run") and "--overwrite" in out
    assert cli.main(["run", "-h"]) == 0
    assert capsys.readouterr().out.startswith("usage: manualgrad run")


def test_study_help_prints_the_usage_and_exits_0(capsys):
    assert cli.main(["study", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: manualgrad study") and "ltg" in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["study", "ltg", "--help"])
    assert exc.value.code == 0
    assert "--workers" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(REGISTRY))
def test_experiment_help_is_plain_text(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: manualgrad run %s" % name) and "--overwrite" in out
    bad = sorted({m.group(0) for m in MARKUP.finditer(out)})
    assert not bad, "%s --help shows markup or internal notes: %s" % (name, bad)


def test_plain_strips_roles_and_literals():
    assert cli.plain(":func:`manualgrad.rnn.forward` and :class:`~manualgrad.inspect.Norms`, "
                     "``x = 1``; :data:`QUICK`; an example::") == \
        "manualgrad.rnn.forward and Norms, x = 1; QUICK; an example:"


# ------------------------------------------------------------------------------ --out
@pytest.mark.parametrize("name", list(REGISTRY))
def test_out_under_a_regular_file_fails_before_training(name, tmp_path, monkeypatch):
    _no_training(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    mod = REGISTRY[name]
    out = blocker / "results"
    with pytest.raises(ValueError, match="out .*%s" % re.escape(repr(str(out))[1:-1])):
        mod.run(**dict(mod.DEFAULTS, **mod.TINY, out=str(out), progress=False), verbose=False)


def test_unwritable_out_fails_before_training(tmp_path, monkeypatch):
    _no_training(monkeypatch)

    def mkstemp(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(record.tempfile, "mkstemp", mkstemp)
    with pytest.raises(ValueError, match="out .*cannot be used.*Permission denied"):
        ltg.run(out=str(tmp_path / "ro"), verbose=False, progress=False, n=120, n_test=40, T=8)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="file permissions do not bind root")
def test_read_only_folder_fails_before_training(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="out"):
            ltg.run(out=str(ro), verbose=False, progress=False, n=120, n_test=40, T=8)
    finally:
        ro.chmod(0o700)


def test_cli_reports_an_unusable_out_in_one_line(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "file").write_text("x")
    assert cli.main(["run", "ltg"] + LTG_TINY + ["--out", str(tmp_path / "file" / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out" in err and "file" in err


# ------------------------------------------------------------------------------ --overwrite
def test_run_refuses_a_folder_with_a_record_unless_overwrite(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "ltg")
    argv = ["run", "ltg"] + LTG_TINY + ["--out", out]
    assert cli.main(argv) == 0
    first = record.load(out)
    capsys.readouterr()
    assert cli.main(argv) == 2                                 # refused, and said in one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "results.json" in err
    assert record.load(out)["created"] == first["created"]     # untouched
    assert cli.main(argv + ["--overwrite"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:                          # Python: refused before training
        _no_training(m)
        with pytest.raises(FileExistsError, match="overwrite"):
            ltg.run(out=out, verbose=False, progress=False, n=120, n_test=40, T=8)
    rec = ltg.run(out=out, verbose=False, overwrite=True, progress=False, n=120, n_test=40, T=8,
                  hidden=5, epochs=1, method="adjoint")
    assert record.comparable(rec)["runs"] == record.comparable(first)["runs"]


def test_quick_does_not_overwrite_the_default_run(tmp_path, capsys):
    out = str(tmp_path / "default")
    assert cli.main(["run", "ltg"] + LTG_TINY + ["--out", out]) == 0
    assert cli.main(["run", "ltg", "--quick"] + LTG_TINY + ["--out", out]) == 2
    assert "already holds a results record" in capsys.readouterr().err


def test_table2_refuses_its_per_seed_records(tmp_path, monkeypatch):
    seed0 = tmp_path / "seed_0"
    seed0.mkdir()
    (seed0 / "results.json").write_text("{}")
    _no_training(monkeypatch)
    with pytest.raises(FileExistsError, match="seed_0"):
        table2.run(**dict(table2.TINY, seeds=(0,), out=str(tmp_path), progress=False),
                   verbose=False)


# ------------------------------------------------------------------------------ imdb --quick
def test_imdb_synthetic_quick_fits_the_corpus(tmp_path, capsys):
    out = tmp_path / "imdb"
    assert cli.main(["run", "imdb", "--synthetic", "--quick", "--epochs", "1", "--T", "6",
                     "--hidden", "3", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    n = 2 * imdb.SYNTHETIC_PER_CLASS
    assert "n_train = %d capped at %d" % (imdb.QUICK["n_train"], n) in text
    rec = json.loads((out / "results.json").read_text())
    assert rec["settings"]["n_train"] == n and rec["settings"]["n_test"] == n
    assert rec["data"]["train"]["reviews"] == n


# ------------------------------------------------------------------------------ study bar
def test_study_progress_bar_is_throttled_and_leaves_one_line(tmp_path, monkeypatch):
    import tqdm.auto
    seen = {}

    class Bar:
        def __init__(self, *a, **k):
            seen.update(k)

        def update(self, n=1):
            seen["updates"] = seen.get("updates", 0) + n

        def close(self):
            seen["closed"] = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    study.run_ltg_study(seeds=(0,), alphas=(0.5,), scales=("fan_in",), hidden=(3,), n=60,
                        n_test=20, T=4, epochs=1, workers=1, out=str(tmp_path), verbose=False,
                        progress=True)
    assert seen["mininterval"] >= 0.2          # a few redraws per second at most
    assert seen.get("leave", True) is True and seen["closed"] and seen["updates"] == 2
