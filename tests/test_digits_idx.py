"""Digit images as sequences (data/digits.py), IDX files and the MNIST folder (data/idx.py),
the shared transforms (data/transforms.py) and the safe-path helper (data/_paths.py).

The bundled scikit-learn digits are used directly (no download); IDX and MNIST folders are
written in tmp_path: valid, gzipped, wrong magic numbers, truncated, trailing bytes, mismatched
counts, missing files.
"""
import gzip
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from manualgrad import backend
from manualgrad.data import _paths, digits, idx, transforms

ALL = (0, 1, 2)


@pytest.fixture(scope="module")
def sk():
    return digits.load_sklearn_digits()


# ------------------------------------------------------------------ the bundled 8x8 digits
@pytest.mark.parametrize("mode,T,p", [("rows", 8, 8), ("columns", 8, 8), ("pixels", 64, 1)])
def test_digit_sequences_shapes_labels_and_counts(mode, T, p):
    (u, y), (ut, yt), info = digits.digit_sequences(mode, classes=ALL, return_info=True)
    assert u.shape == (T, 403, p) and ut.shape == (T, 134, p)
    assert y.shape == (403,) and yt.shape == (134,)
    assert y.dtype == np.int64 and yt.dtype == np.int64 and u.dtype == np.float64
    assert set(np.unique(backend.to_numpy(y))) == {0, 1, 2}
    assert set(np.unique(backend.to_numpy(yt))) == {0, 1, 2}
    # scikit-learn ships 178, 182, 177 images of 0, 1, 2; a quarter of each to the test set
    assert np.add(info["train_counts"], info["test_counts"]).tolist() == [178, 182, 177]
    assert info["test_counts"] == [44, 46, 44] and info["T"] == T and info["p"] == p


def test_rows_columns_pixels_hold_the_same_image(sk):
    images, labels = sk
    (u_r, _), _ = digits.sequences_from_images(images, labels, "rows", normalize=None, seed=3)
    (u_c, _), _ = digits.sequences_from_images(images, labels, "columns", normalize=None, seed=3)
    (u_p, y), _ = digits.sequences_from_images(images, labels, "pixels", normalize=None, seed=3)
    i = 5
    img = u_r[:, i, :]                                   # rows: u_t = row t
    assert np.array_equal(u_c[:, i, :], img.T)           # columns: u_t = column t
    assert np.array_equal(u_p[:, i, 0], img.ravel())     # pixels: row-major
    match = [k for k in range(len(images)) if np.array_equal(images[k], backend.to_numpy(img))]
    assert match and labels[match[0]] == int(y[i])       # an actual image with its label


def test_normalisation_uses_training_statistics_only(sk):
    images, labels = sk
    (u, _), (ut, _), info = digits.sequences_from_images(images, labels, "rows", classes=ALL,
                                                         return_info=True)
    assert abs(float(u.mean())) < 1e-12 and abs(float(u.std()) - 1.0) < 1e-12
    assert abs(float(ut.mean())) > 1e-6                  # test stats are not refitted
    (r, _), (rt, _) = digits.sequences_from_images(images, labels, "rows", classes=ALL,
                                                   normalize=None)
    assert np.allclose(rt, (ut * info["std"]) + info["mean"])
    assert info["mean"] == pytest.approx(float(r.mean())) and info["std"] == \
        pytest.approx(float(r.std()))
    (uc, _), _, ic = digits.sequences_from_images(images, labels, "rows", classes=ALL,
                                                  normalize="channel", return_info=True)
    m = uc.mean(axis=(0, 1))
    s = uc.std(axis=(0, 1))
    const = np.asarray(ic["std"]) == 1.0                  # always-blank columns: centred only
    assert np.allclose(m, 0.0, atol=1e-12)
    assert np.allclose(s[~const], 1.0) and len(ic["mean"]) == 8


def test_permutation_is_fixed_recorded_and_applied_identically(sk):
    images, labels = sk
    kw = dict(mode="pixels", classes=ALL, normalize=None, seed=0)
    (u, y), (ut, yt) = digits.sequences_from_images(images, labels, **kw)
    (v, y2), (vt, yt2), info = digits.sequences_from_images(images, labels, permute=True,
                                                            perm_seed=7, return_info=True, **kw)
    perm = np.asarray(info["perm"])
    assert sorted(perm.tolist()) == list(range(64)) and not np.array_equal(perm, np.arange(64))
    assert np.array_equal(perm, transforms.step_permutation(64, 7))    # recorded = seeded
    assert np.array_equal(v, u[perm]) and np.array_equal(vt, ut[perm])  # same for train, test
    assert np.array_equal(y, y2) and np.array_equal(yt, yt2)
    (w, _), _, info2 = digits.sequences_from_images(images, labels, permute=True, perm_seed=7,
                                                    return_info=True, **kw)
    assert info2["perm"] == info["perm"] and np.array_equal(w, v)      # fixed
    (z, _), _, info3 = digits.sequences_from_images(images, labels, permute=True, perm_seed=8,
                                                    return_info=True, **kw)
    assert info3["perm"] != info["perm"]
    # normalisation ("global" or "channel") commutes with the permutation
    (a, _), _ = digits.sequences_from_images(images, labels, mode="rows", classes=ALL)
    (b, _), _, ib = digits.sequences_from_images(images, labels, mode="rows", classes=ALL,
                                                 permute=True, perm_seed=1, return_info=True)
    assert np.allclose(b, a[np.asarray(ib["perm"])])


def test_class_subset_is_remapped_in_the_given_order(sk):
    images, labels = sk
    (u, y), (ut, yt), info = digits.sequences_from_images(images, labels, "rows", classes=(7, 3),
                                                          normalize=None, return_info=True)
    assert info["classes"] == [7, 3] and set(np.unique(backend.to_numpy(y))) == {0, 1}
    sevens = images[labels == 7]
    first = u[:, np.flatnonzero(y == 0)[0], :]
    assert any(np.array_equal(backend.to_numpy(first), s) for s in sevens)  # label 0 is a seven
    assert u.shape[1] + ut.shape[1] == int((labels == 7).sum() + (labels == 3).sum())
    (_, yall), _, iall = digits.sequences_from_images(images, labels, return_info=True)
    assert iall["classes"] == list(range(10))
    assert set(np.unique(backend.to_numpy(yall))) == set(range(10))


@settings(max_examples=15)
@given(frac=st.floats(0.1, 0.6), seed=st.integers(0, 1000))
def test_split_is_disjoint_covering_stratified_and_seeded(frac, seed):
    y = np.repeat(np.arange(4), [10, 25, 7, 40])
    tr, te = transforms.stratified_split(y, frac, seed)
    assert len(set(tr) & set(te)) == 0 and sorted(np.concatenate([tr, te])) == list(range(82))
    for c, n_c in zip(range(4), (10, 25, 7, 40)):
        k = int((y[te] == c).sum())
        assert k == min(max(int(round(frac * n_c)), 1), n_c - 1)
    tr2, te2 = transforms.stratified_split(y, frac, seed)
    assert np.array_equal(te, te2)


def test_split_seed_changes_the_split_and_train_test_images_are_disjoint(sk):
    images, labels = sk
    (u0, _), (t0, _) = digits.sequences_from_images(images, labels, "pixels", classes=ALL,
                                                    normalize=None, seed=0)
    (u1, _), (t1, _) = digits.sequences_from_images(images, labels, "pixels", classes=ALL,
                                                    normalize=None, seed=1)
    assert not np.array_equal(t0, t1)
    train = {u0[:, i, 0].tobytes() for i in range(u0.shape[1])}
    test = {t0[:, i, 0].tobytes() for i in range(t0.shape[1])}
    keys = [img.astype(float).tobytes() for img in images]
    dup = {k for k in keys if keys.count(k) > 1}          # images that occur twice in the data
    assert not ((train & test) - dup) and len(train) > 390 and len(test) > 130


def test_loader_errors_name_the_argument(sk):
    images, labels = sk
    with pytest.raises(ValueError, match="mode"):
        digits.digit_sequences("diagonal")
    with pytest.raises(ValueError, match="classes"):
        digits.digit_sequences(classes=(0, 11))
    with pytest.raises(ValueError, match="at least 2"):
        digits.digit_sequences(classes=(3,))
    with pytest.raises(ValueError, match="test_fraction"):
        digits.digit_sequences(test_fraction=1.0)
    with pytest.raises(ValueError, match="normalize"):
        digits.digit_sequences(normalize="minmax")
    with pytest.raises(ValueError, match="shape"):
        digits.sequences_from_images(images[:, 0], labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(1797,\)"):
        digits.sequences_from_images(images, labels[:-1])
    with pytest.raises(TypeError, match="integer class labels"):
        digits.sequences_from_images(images, labels + 0.5)


def test_given_test_set_and_float32_backend(sk):
    images, labels = sk
    with backend.use_backend("numpy", "float32"):
        (u, y), (ut, yt), info = digits.sequences_from_images(
            images[:1000], labels[:1000], "columns", classes=ALL,
            test=(images[1000:], labels[1000:]), return_info=True)
    assert u.dtype == np.float32 and info["split"] == "given"
    assert u.shape[1] == int(np.isin(labels[:1000], ALL).sum())
    assert ut.shape[1] == int(np.isin(labels[1000:], ALL).sum())
    with pytest.raises(ValueError, match="test images"):
        digits.sequences_from_images(images, labels, test=(images[:, :4], labels))


def test_missing_scikit_learn_says_how_to_install(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        digits.load_sklearn_digits()


def test_transforms_noise_and_permutation_checks():
    u = np.zeros((50, 400, 3))
    v = transforms.add_gaussian_noise(u, variance=2.0, seed=4)
    assert abs(v.mean()) < 0.02 and abs(v.var() - 2.0) < 0.03
    assert np.array_equal(v, transforms.add_gaussian_noise(u, 2.0, seed=4))
    assert not np.array_equal(v, transforms.add_gaussian_noise(u, 2.0, seed=5))
    assert np.array_equal(transforms.add_gaussian_noise(u, 0.0), u)
    with pytest.raises(ValueError, match="variance"):
        transforms.add_gaussian_noise(u, -1.0)
    with pytest.raises(TypeError, match="floating"):
        transforms.add_gaussian_noise(np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="permutation"):
        transforms.permute_steps(u, np.arange(49))
    with pytest.raises(ValueError, match="permutation"):
        transforms.permute_steps(u, np.zeros(50, dtype=int))
    with pytest.raises(ValueError, match="per"):
        transforms.standardize(u, per="row")
    with pytest.raises(ValueError, match="at least 2"):
        transforms.stratified_split(np.array([0, 0, 1]), 0.5)


# ------------------------------------------------------------------ IDX files and MNIST
def _idx_bytes(arr, code=0x08):
    arr = np.asarray(arr)
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(">%dI" % arr.ndim, *arr.shape)
    return head + arr.astype(dt).tobytes()


def _write(path, data, gz=False):
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def _mnist_folder(folder, n_train=30, n_test=12, gz=False, dotted=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        data[split] = (x, y)
        for name, arr in zip(idx.MNIST_FILES[split], (x, y)):
            if dotted:
                name = name.replace("-idx", ".idx")
            _write(folder / (name + (".gz" if gz else "")), _idx_bytes(arr), gz)
    return data


@pytest.mark.parametrize("code", sorted(idx.IDX_TYPES))
def test_read_idx_round_trips_every_element_type(tmp_path, code):
    a = np.arange(24).reshape(2, 3, 4)
    arr = {0x08: a * 10, 0x09: a - 12, 0x0B: a * 1000 - 12000, 0x0C: a * 100000 - 10 ** 6,
           0x0D: a / 4 - 3, 0x0E: a / 3 - 3}[code]
    p = _write(tmp_path / "a.idx", _idx_bytes(arr, code))
    out = idx.read_idx(p)
    assert out.shape == (2, 3, 4) and np.array_equal(out, arr)
    assert out.dtype.byteorder in ("=", "|")


def test_read_idx_gzip_detected_by_content(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    p = _write(tmp_path / "labels-no-suffix", _idx_bytes(arr), gz=True)
    assert np.array_equal(idx.read_idx(p, expect_magic=idx.MAGIC_LABELS), arr)


def test_read_idx_errors(tmp_path):
    good = _idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="not an IDX file: magic number 0x12340803"):
        idx.read_idx(_write(tmp_path / "m1", b"\x12\x34" + good[2:]))
    with pytest.raises(ValueError, match="not an IDX file"):
        idx.read_idx(_write(tmp_path / "m2", good[:2] + b"\x07" + good[3:]))   # unknown type
    with pytest.raises(ValueError, match=r"magic number 0x00000803, expected 0x00000801"):
        idx.read_idx(_write(tmp_path / "m3", good), expect_magic=idx.MAGIC_LABELS)
    with pytest.raises(ValueError, match="truncated IDX header"):
        idx.read_idx(_write(tmp_path / "t1", good[:3]))
    with pytest.raises(ValueError, match="truncated IDX header"):
        idx.read_idx(_write(tmp_path / "t2", good[:9]))
    with pytest.raises(ValueError, match=r"truncated IDX file.*12 bytes of data.*only 11"):
        idx.read_idx(_write(tmp_path / "t3", good[:-1]))
    with pytest.raises(ValueError, match="truncated IDX file"):
        idx.read_idx(_write(tmp_path / "t4.gz", good[:-5], gz=True))
    with pytest.raises(ValueError, match="trailing bytes"):
        idx.read_idx(_write(tmp_path / "x1", good + b"\x00"))
    with pytest.raises(ValueError, match="corrupt gzip"):
        idx.read_idx(_write(tmp_path / "g1", gzip.compress(good)[:-12]))
    with pytest.raises(FileNotFoundError):
        idx.read_idx(tmp_path / "nope")


def test_read_idx_refuses_huge_header_dimensions_before_allocating(tmp_path):
    """A corrupt header announcing 4.7e11 (or 4.5e20) bytes is a ValueError naming the file,
    decided from the file's size before any buffer is allocated (not a MemoryError)."""
    for dims in ((60000, 2800, 2800), (4000000000, 4000000000, 28)):
        raw = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *dims) + bytes(100)
        with pytest.raises(ValueError, match=r"huge\.idx: truncated IDX file.*announces shape"):
            idx.read_idx(_write(tmp_path / "huge.idx", raw))
        with pytest.raises(ValueError, match=r"huge\.gz: truncated IDX file.*announces shape"):
            idx.read_idx(_write(tmp_path / "huge.gz", raw, gz=True))


@pytest.mark.parametrize("gz,dotted", [(False, False), (True, False), (False, True)])
def test_load_mnist_reads_the_standard_names(tmp_path, gz, dotted):
    data = _mnist_folder(tmp_path / "mnist", gz=gz, dotted=dotted)
    (x, y), (xt, yt) = idx.load_mnist(tmp_path / "mnist")
    assert x.shape == (30, 28, 28) and xt.shape == (12, 28, 28) and x.dtype == np.uint8
    assert np.array_equal(x, data["train"][0]) and np.array_equal(yt, data["test"][1])


def test_mnist_sequences_columns_as_in_the_paper(tmp_path):
    data = _mnist_folder(tmp_path / "mnist")
    (u, y), (ut, yt), info = digits.mnist_sequences(tmp_path / "mnist", normalize=None,
                                                    return_info=True)
    x, lab = data["train"]
    keep = np.isin(lab, ALL)
    assert u.shape == (28, int(keep.sum()), 28) and info["split"] == "given"
    assert np.array_equal(backend.to_numpy(u[:, 0, :]), x[keep][0].T.astype(float))  # column i
    assert np.array_equal(backend.to_numpy(y), lab[keep])
    (v, _), _, pinfo = digits.mnist_sequences(tmp_path / "mnist", permute=True, perm_seed=2,
                                              normalize=None, return_info=True)
    assert np.array_equal(v, u[np.asarray(pinfo["perm"])])


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="yann.lecun.com"):
        idx.load_mnist(tmp_path / "absent")
    folder = tmp_path / "m"
    _mnist_folder(folder)
    os.remove(folder / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match=r"MNIST test labels.*t10k-labels-idx1-ubyte"):
        idx.load_mnist(folder)
    _write(folder / "t10k-labels-idx1-ubyte", _idx_bytes(np.zeros(11, dtype=np.uint8)))
    with pytest.raises(ValueError, match="12 images but .* 11 labels"):
        idx.load_mnist(folder)
    _write(folder / "t10k-labels-idx1-ubyte", _idx_bytes(np.zeros((12, 28, 28), np.uint8)))
    with pytest.raises(ValueError, match="expected 0x00000801"):
        idx.load_mnist(folder)
    with pytest.raises(NotADirectoryError):
        idx.load_mnist(folder / "train-images-idx3-ubyte")


def test_load_mnist_refuses_a_symlink_that_leaves_the_folder(tmp_path):
    outside = tmp_path / "outside"
    _mnist_folder(outside)
    folder = tmp_path / "m"
    _mnist_folder(folder)
    os.remove(folder / "train-images-idx3-ubyte")
    os.symlink(outside / "train-images-idx3-ubyte", folder / "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match="outside the data folder"):
        idx.load_mnist(folder)


# ------------------------------------------------------------------ the safe-path helper
def test_paths_helper(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    (tmp_path / "secret").write_text("s")
    os.symlink(root / "sub" / "f.txt", root / "inside")
    os.symlink(tmp_path / "secret", root / "escape")
    r = _paths.require_dir(root, "data folder")
    assert _paths.safe_join(r, "sub", "f.txt") == (root / "sub" / "f.txt").resolve()
    assert _paths.safe_join(r, "inside") == (root / "sub" / "f.txt").resolve()
    for parts in (("..", "secret"), ("sub", "..", "..", "secret"), ("escape",)):
        with pytest.raises(ValueError, match="outside the data folder"):
            _paths.safe_join(r, *parts)
    with pytest.raises(ValueError, match="relative"):
        _paths.safe_join(r, str(tmp_path / "secret"))
    with pytest.raises(FileNotFoundError, match="labels not found.*Get it here"):
        _paths.require_file(r, "sub", "nope.txt", what="labels", hint="Get it here.")
    with pytest.raises(IsADirectoryError):
        _paths.require_file(r, "sub")
    with pytest.raises(FileNotFoundError, match="does not exist.*hint!"):
        _paths.require_dir(tmp_path / "none", hint="hint!")
    with pytest.raises(TypeError):
        _paths.require_dir(3)
    assert _paths.find_first(r, ["a", ("sub", "f.txt")]) == (root / "sub" / "f.txt").resolve()
    with pytest.raises(FileNotFoundError, match="tried"):
        _paths.find_first(r, ["a", "b"])
