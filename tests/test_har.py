"""The UCI HAR loader and HAR-2 / Noisy-HAR-2 (data/har.py, FW Sec. V), on tiny fixtures written
in tmp_path in the UCI "Inertial Signals" layout, and on broken layouts."""
import os

import numpy as np
import pytest

from manualgrad import backend
from manualgrad.data import har

T = 6


def _write_split(root, split, u, y, fmt="%.6e"):
    """u (n, T, 9) and y (n,) labels 1..6 written in the UCI layout under root/split."""
    sig = root / split / "Inertial Signals"
    sig.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(har.CHANNELS):
        lines = ["  " + " ".join(fmt % v for v in row) for row in u[:, :, c]]  # UCI: leading spaces
        (sig / ("%s_%s.txt" % (name, split))).write_text("\n".join(lines) + "\n")
    (root / split / ("y_%s.txt" % split)).write_text("\n".join(str(v) for v in y) + "\n")


def _fixture(tmp_path, n_train=12, n_test=6, seed=0, wrap=True):
    rng = np.random.default_rng(seed)
    data = {}
    root = tmp_path / "UCI HAR Dataset" if wrap else tmp_path
    for split, n in (("train", n_train), ("test", n_test)):
        # channel c has mean c and scale c + 1, so per-channel normalisation is visible
        u = rng.standard_normal((n, T, 9)) * (np.arange(9) + 1) + np.arange(9)
        y = np.arange(n) % 6 + 1
        _write_split(root, split, u, y)
        data[split] = (u, y)
    return root, data


def test_load_split_reads_every_channel_in_order(tmp_path):
    root, data = _fixture(tmp_path)
    u, y = har.load_har_split(tmp_path, "train")        # the folder holding "UCI HAR Dataset"
    assert u.shape == (12, T, 9) and y.dtype == np.int64
    assert np.allclose(u, data["train"][0], rtol=1e-6) and np.array_equal(y, data["train"][1])
    u2, _ = har.load_har_split(root, "test")             # or the dataset folder itself
    assert np.allclose(u2, data["test"][0], rtol=1e-6)
    u3, _ = har.load_har_split(root, "test", channels=("total_acc_z", "body_acc_x"))
    assert np.allclose(u3, data["test"][0][:, :, [8, 0]], rtol=1e-6)


def test_har2_labels_follow_fastgrnn_grouping():
    y = np.arange(1, 7)
    # {Walking_Upstairs (2), Sitting (4), Laying (6)} -> 0;
    # {Walking (1), Walking_Downstairs (3), Standing (5)} -> 1
    assert har.har_labels(y).tolist() == [1, 0, 1, 0, 1, 0]
    assert har.har_labels(y).tolist() == (y % 2).tolist()
    assert har.har_labels(y, grouping="motion").tolist() == [1, 1, 1, 0, 0, 0]
    assert har.har_labels(y, task="har6").tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="grouping"):
        har.har_labels(y, grouping="odd")


def test_har_sequences_time_major_normalised_with_train_stats(tmp_path):
    _, data = _fixture(tmp_path)
    (u, y), (ut, yt), info = har.har_sequences(tmp_path, return_info=True)
    assert u.shape == (T, 12, 9) and ut.shape == (T, 6, 9)
    assert y.dtype == np.int64 and set(np.unique(backend.to_numpy(y))) == {0, 1}
    assert np.allclose(u.mean(axis=(0, 1)), 0.0) and np.allclose(u.std(axis=(0, 1)), 1.0)
    raw_tr, raw_te = data["train"][0], data["test"][0]
    mean, std = raw_tr.mean(axis=(0, 1)), raw_tr.std(axis=(0, 1))
    assert np.allclose(backend.to_numpy(ut), ((raw_te - mean) / std).transpose(1, 0, 2),
                       rtol=1e-5, atol=1e-6)
    assert np.allclose(info["mean"], mean, rtol=1e-5) and info["train_counts"] == [6, 6]
    assert np.array_equal(backend.to_numpy(yt), data["test"][1] % 2)
    (f, fy), _ = har.har_sequences(tmp_path, targets="float")
    assert fy.shape == (12, 1) and fy.dtype == np.float64 and np.array_equal(fy[:, 0], y)
    (r, _), _ = har.har_sequences(tmp_path, normalize=None)
    assert np.allclose(backend.to_numpy(r), raw_tr.transpose(1, 0, 2), rtol=1e-6)
    (s6, y6), _ = har.har_sequences(tmp_path, task="har6")
    assert set(np.unique(backend.to_numpy(y6))) == set(range(6))


def test_noisy_har2_adds_variance_two_after_normalisation(tmp_path):
    _fixture(tmp_path, n_train=60, n_test=30)
    (u, _), (ut, _) = har.har_sequences(tmp_path)
    (v, _), (vt, _), info = har.har_sequences(tmp_path, noise_variance=2.0, noise_seed=3,
                                              return_info=True)
    e, et = v - u, vt - ut
    assert abs(e.mean()) < 0.1 and abs(e.var() - 2.0) < 0.2 and abs(et.var() - 2.0) < 0.3
    assert not np.allclose(e[:, :30], et)                # train and test noise differ
    (w, _), _ = har.har_sequences(tmp_path, noise_variance=2.0, noise_seed=3)
    assert np.array_equal(w, v) and info["noise_variance"] == 2.0


def test_float32_backend(tmp_path):
    _fixture(tmp_path)
    with backend.use_backend("numpy", "float32"):
        (u, y), _ = har.har_sequences(tmp_path)
    assert u.dtype == np.float32 and y.dtype == np.int64


def test_wrong_layouts_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*archive.ics.uci.edu"):
        har.har_sequences(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="neither train/"):
        har.har_sequences(tmp_path)
    root, _ = _fixture(tmp_path)
    sig = root / "train" / "Inertial Signals"
    # missing channel file
    os.rename(sig / "body_gyro_y_train.txt", tmp_path / "moved.txt")
    with pytest.raises(FileNotFoundError, match="body_gyro_y.*body_gyro_y_train.txt"):
        har.load_har_split(root, "train")
    os.rename(tmp_path / "moved.txt", sig / "body_gyro_y_train.txt")
    # ragged line
    path = sig / "total_acc_x_train.txt"
    good = path.read_text()
    lines = good.splitlines()
    lines[3] = " ".join(lines[3].split()[:-1])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4 has 5 values, but line 1 has 6"):
        har.load_har_split(root, "train")
    # a channel with fewer windows than the others
    path.write_text("\n".join(good.splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match="channel total_acc_x has 11 windows"):
        har.load_har_split(root, "train")
    path.write_text(good.replace("e", "x", 1))
    with pytest.raises(ValueError, match="not all values are numbers"):
        har.load_har_split(root, "train")
    path.write_text(good)
    # label count mismatch, bad label values
    lab = root / "train" / "y_train.txt"
    ok = lab.read_text()
    lab.write_text(ok + "3\n")
    with pytest.raises(ValueError, match="13 labels but the channel files have 12"):
        har.load_har_split(root, "train")
    lab.write_text(ok.replace("6", "7", 1))
    with pytest.raises(ValueError, match="label 7, expected 1..6"):
        har.load_har_split(root, "train")
    lab.write_text(ok.replace("6", "walk", 1))
    with pytest.raises(ValueError, match="expected one integer label"):
        har.load_har_split(root, "train")
    os.remove(lab)
    with pytest.raises(FileNotFoundError, match="HAR train labels"):
        har.load_har_split(root, "train")
    lab.write_text(ok)
    with pytest.raises(ValueError, match="split"):
        har.load_har_split(root, "valid")
    with pytest.raises(ValueError, match="channels"):
        har.load_har_split(root, "train", channels=("magnetometer_x",))
    with pytest.raises(ValueError, match="targets"):
        har.har_sequences(root, task="har6", targets="float")


def test_symlinked_channel_outside_the_folder_is_refused(tmp_path):
    root, _ = _fixture(tmp_path / "a")
    sig = root / "train" / "Inertial Signals"
    outside = tmp_path / "elsewhere.txt"
    os.rename(sig / "body_acc_x_train.txt", outside)
    os.symlink(outside, sig / "body_acc_x_train.txt")
    with pytest.raises(ValueError, match="outside the data folder"):
        har.load_har_split(root, "train")
