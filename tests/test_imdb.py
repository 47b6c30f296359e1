"""The IMDB pipeline (JP Sec. IV-B): tokenizer, aclImdb layout, GloVe-format vectors, the unknown
word and padding policies, safe paths, and the adjoint/coadjoint/LSTM experiment on fixtures.

Every corpus and vector file here is written by the test into tmp_path (a few reviews, 3- or
4-d vectors); the real data are not needed.
"""
import json
import os

import numpy as np
import pytest

from manualgrad import backend, cli, rnn
from manualgrad.cells import lstm
from manualgrad.data import imdb as D
from manualgrad.experiments import imdb as X, record

VEC = {"good": [1.0, 0.0, 0.0], "bad": [-1.0, 0.0, 0.0], "movie": [0.0, 1.0, 0.0],
       "the": [0.0, 0.0, 1.0], "a": [0.5, 0.5, 0.5], "plot": [0.25, -0.5, 2.0],
       "dont": [0.0, -1.0, 0.0]}

REVIEWS = {
    ("train", "pos"): {"3_9": "A good movie.", "10_7": "The plot<br />was GOOD, good, good!",
                       "2_10": "good"},
    ("train", "neg"): {"1_2": "A bad movie. I don't like it.", "0_1": "bad bad plot",
                       "5_4": "Worst. Ever!"},
    ("test", "pos"): {"0_8": "good plot", "1_10": "a good, good movie"},
    ("test", "neg"): {"0_3": "bad", "7_1": "the bad movie of the year"},
}


def write_vectors(path, vectors=VEC, header=False):
    lines = ["%d %d" % (len(vectors), len(next(iter(vectors.values()))))] if header else []
    lines += ["%s %s" % (w, " ".join(repr(float(x)) for x in v)) for w, v in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_corpus(root, reviews=REVIEWS):
    for (split, cls), files in reviews.items():
        d = root / "aclImdb" / split / cls
        d.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (d / (name + ".txt")).write_text(text, encoding="utf-8")
    return root / "aclImdb"


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "data"), write_vectors(tmp_path / "vec.txt")


# ------------------------------------------------------------------------------ tokens
@pytest.mark.parametrize("text, tokens", [
    ("I didn't like it.<br /><br />2/10!", ["i", "didnt", "like", "it", "2", "10"]),
    ("GOOD<br/>Movie<BR>end", ["good", "movie", "end"]),
    ("film's \u201cbest\u201d -- ok...", ["films", "best", "ok"]),
    ("  ", []),
    ("caf\u00e9 na\u00efve_x", ["caf\u00e9", "na\u00efve", "x"]),
    ("'quoted' words'", ["quoted", "words"]),
])
def test_tokenize_lowercases_strips_breaks_and_punctuation(text, tokens):
    assert D.tokenize(text) == tokens


def test_tokenize_rejects_non_text():
    with pytest.raises(TypeError, match="text must be a str"):
        D.tokenize(b"bytes")


# ------------------------------------------------------------------------------ reviews
def test_list_reviews_order_labels_ids_ratings(corpus):
    acl, _ = corpus
    for folder in (acl, acl.parent):                     # aclImdb or the folder holding it
        rv = D.list_reviews(folder, "train")
        assert [(r.cls, r.id, r.rating, r.label) for r in rv] == [
            ("neg", 0, 1, 0), ("neg", 1, 2, 0), ("neg", 5, 4, 0),
            ("pos", 2, 10, 1), ("pos", 3, 9, 1), ("pos", 10, 7, 1)]
        assert all(os.path.isabs(r.path) and r.split == "train" for r in rv)
    reviews, texts = D.read_reviews(acl, "test")
    assert texts == ["bad", "the bad movie of the year", "good plot", "a good, good movie"]


def test_read_reviews_balanced_subsets_by_seed(tmp_path):
    many = {("train", c): {"%d_%d" % (i, 8 if c == "pos" else 2): "w%d" % i for i in range(10)}
            for c in ("pos", "neg")}
    acl = write_corpus(tmp_path, many)
    a, _ = D.read_reviews(acl, "train", n=5, seed=1)
    b, _ = D.read_reviews(acl, "train", n=5, seed=1)
    c, _ = D.read_reviews(acl, "train", n=5, seed=2)
    assert a == b and a != c
    assert [r.label for r in a] == [0, 0, 1, 1, 1]          # n // 2 neg, the rest pos
    assert [r.id for r in a[:2]] == sorted(r.id for r in a[:2])
    with pytest.raises(ValueError, match="asks for 11 neg reviews of the train split, but it "
                                         "has 10"):
        D.read_reviews(acl, "train", n=22)
    with pytest.raises(ValueError, match="split must be one of train, test"):
        D.list_reviews(acl, "unsup")


def test_missing_data_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*ai\.stanford\.edu/~amaas"):
        D.list_reviews(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds neither train/.*aclImdb_v1\.tar\.gz"):
        D.list_reviews(tmp_path / "empty")
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        D.list_reviews(tmp_path / "f")


@pytest.mark.parametrize("damage, error, message", [
    (lambda acl: [p.unlink() for p in (acl / "train" / "neg").iterdir()] and
     (acl / "train" / "neg").rmdir(), FileNotFoundError, r"lacks train/neg/.*ID_RATING\.txt"),
    (lambda acl: (acl / "train" / "pos" / "notes.txt").write_text("x"), ValueError,
     r"unexpected entry 'notes\.txt'.*ID_RATING\.txt"),
    (lambda acl: (acl / "train" / "pos" / "4_x.txt").write_text("x"), ValueError,
     "unexpected entry '4_x.txt'"),
    (lambda acl: (acl / "train" / "pos" / "11_8.txt").mkdir(), ValueError,
     "is not a regular file"),
    (lambda acl: [p.unlink() for p in (acl / "train" / "pos").iterdir()], ValueError,
     "no reviews in"),
])
def test_bad_layouts_are_refused_with_clear_errors(corpus, damage, error, message):
    acl, _ = corpus
    damage(acl)
    with pytest.raises(error, match=message):
        D.list_reviews(acl, "train")


def test_hidden_files_are_ignored(corpus):
    acl, _ = corpus
    (acl / "train" / "pos" / ".DS_Store").write_text("x")
    assert len(D.list_reviews(acl, "train")) == 6


def test_symlinks_that_escape_the_folder_are_refused(tmp_path, corpus):
    acl, _ = corpus
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the data folder")
    os.symlink(secret, acl / "train" / "pos" / "99_9.txt")
    with pytest.raises(ValueError, match="outside the data folder"):
        D.list_reviews(acl, "train")
    os.unlink(acl / "train" / "pos" / "99_9.txt")
    # a symlink that stays inside the folder is fine
    os.symlink(acl / "train" / "pos" / "3_9.txt", acl / "train" / "pos" / "98_9.txt")
    assert len(D.list_reviews(acl, "train")) == 7
    # a split folder linked to somewhere else
    other = tmp_path / "elsewhere"
    write_corpus(other)
    os.rename(acl / "test", tmp_path / "old_test")
    os.symlink(other / "aclImdb" / "test", acl / "test")
    with pytest.raises(ValueError, match="outside the data folder"):
        D.list_reviews(acl, "test")


# ------------------------------------------------------------------------------ vectors
def test_read_vectors_all_or_some_words_row_0_is_zero(tmp_path):
    path = write_vectors(tmp_path / "v.txt")
    v = D.read_vectors(path)
    assert v.dim == 3 and v.words == list(VEC) and v.lines == len(VEC) and not v.header
    assert v.matrix.shape == (len(VEC) + 1, 3) and not v.matrix[0].any()
    for w, x in VEC.items():
        assert v.matrix[v.index[w]].tolist() == x
    some = D.read_vectors(path, words={"plot", "bad", "nosuch"}, dim=3)
    assert some.words == ["bad", "plot"] and some.lines == len(VEC) and "nosuch" not in some
    assert some.matrix[some.index["plot"]].tolist() == VEC["plot"]
    h = D.read_vectors(write_vectors(tmp_path / "h.txt", header=True))
    assert h.header and h.words == list(VEC)
    with open(tmp_path / "dup.txt", "w") as f:
        f.write("a 1 2\nb 3 4\na 5 6\n\n")
    d = D.read_vectors(tmp_path / "dup.txt")
    assert d.duplicates == 1 and d.matrix[d.index["a"]].tolist() == [1.0, 2.0] and d.lines == 3


@pytest.mark.parametrize("content, message", [
    ("a 1 2 3\nb 1 2\nc 1 2 3\n",
     r"line 2 has 2 numbers after the word, expected 3 \(as on line 1\)"),
    ("a 1 2\nb 1 2\nc 1 2 3 4\n", "line 3 has 4 numbers after the word, expected 2"),
    ("2 3\na 1 2 3\nb 1 2\n", r"line 3 has 2 numbers after the word, expected 3 \(as on line 1\)"),
    ("a 1 x\n", "line 1: the values after 'a' are not all numbers"),
    ("a 1 nan\n", "non-finite"),
    ("", "holds no word vectors"),
    ("\n\n", "holds no word vectors"),
    ("lonely\n", "line 1 has no numbers after the word 'lonely'"),
])
def test_ragged_or_bad_vector_files_are_refused(tmp_path, content, message):
    (tmp_path / "v.txt").write_text(content)
    with pytest.raises(ValueError, match=message):
        D.read_vectors(tmp_path / "v.txt")


def test_vector_file_errors_missing_dim_utf8_symlink(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*nlp\.stanford\.edu/projects/"
                                                r"glove.*glove\.6B\.100d\.txt"):
        D.read_vectors(tmp_path / "glove.txt")
    path = write_vectors(tmp_path / "v.txt")
    with pytest.raises(ValueError, match="has 3-dimensional vectors .* dim = 100"):
        D.read_vectors(path, dim=100)
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 1 2\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not utf-8"):
        D.read_vectors(tmp_path / "latin1.txt")
    with pytest.raises(ValueError, match="not a regular file"):
        D.read_vectors(tmp_path)
    inner = tmp_path / "inner"
    inner.mkdir()
    os.symlink(path, inner / "glove.txt")             # its target lies outside inner/
    with pytest.raises(ValueError, match="outside the data folder"):
        D.read_vectors(inner / "glove.txt")
    os.symlink(path, tmp_path / "same_folder.txt")    # a link within the folder: fine
    assert D.read_vectors(tmp_path / "same_folder.txt").dim == 3
    with pytest.raises(TypeError, match="vectors must be a file path"):
        D.read_vectors(3)


# ------------------------------------------------------------------------------ policies
def _vec(tmp_path):
    return D.read_vectors(write_vectors(tmp_path / "v.txt"))


def test_encode_zero_policy_front_and_back_padding(tmp_path):
    v = _vec(tmp_path)
    i = v.index
    docs = [["good", "zzz", "movie"], ["the", "plot", "a", "bad", "movie", "good"], ["qqq"], []]
    tok, st = D.encode(docs, v, T=4, pad="front", unknown="zero")
    assert tok.shape == (4, 4) and tok.dtype == np.int64
    assert tok[:, 0].tolist() == [0, i["good"], 0, i["movie"]]          # unknown kept as 0
    assert tok[:, 1].tolist() == [i["the"], i["plot"], i["a"], i["bad"]]  # the first 4 tokens
    assert tok[:, 2].tolist() == [0, 0, 0, 0] and tok[:, 3].tolist() == [0, 0, 0, 0]
    assert st == {"reviews": 4, "tokens_in_reviews": 10, "words_used": 6, "unknown": 2,
                  "unknown_rate": 2 / 8, "padded_positions": 1 + 3 + 4, "reviews_padded": 3,
                  "reviews_truncated": 1, "reviews_empty": 2,
                  "top_unknown": [["zzz", 1], ["qqq", 1]]}
    back, st2 = D.encode(docs, v, T=4, pad="back")
    assert back[:, 0].tolist() == [i["good"], 0, i["movie"], 0]
    assert st2 == st


def test_encode_skip_policy_drops_unknown_words_before_the_cut(tmp_path):
    v = _vec(tmp_path)
    i = v.index
    docs = [["zzz", "good", "yyy", "movie", "zzz", "the", "plot", "xxx", "bad"],
            ["zzz", "good"]]
    tok, st = D.encode(docs, v, T=3, pad="front", unknown="skip")
    assert tok[:, 0].tolist() == [i["good"], i["movie"], i["the"]]
    assert tok[:, 1].tolist() == [0, 0, i["good"]]
    assert st["unknown"] == 4 and st["words_used"] == 4      # zzz, yyy, zzz (+ zzz of doc 2)
    assert st["top_unknown"][0] == ["zzz", 3]
    assert st["reviews_truncated"] == 1 and st["reviews_padded"] == 1
    tok0, _ = D.encode(docs, v, T=3, unknown="zero")
    assert tok0[:, 0].tolist() == [0, i["good"], 0]


def test_encode_rejects_bad_policies(tmp_path):
    v = _vec(tmp_path)
    with pytest.raises(ValueError, match="pad must be one of front, back"):
        D.encode([["a"]], v, pad="middle")
    with pytest.raises(ValueError, match="unknown must be one of zero, skip"):
        D.encode([["a"]], v, unknown="drop")
    with pytest.raises(ValueError, match="T must be >= 1"):
        D.encode([["a"]], v, T=0)
    with pytest.raises(TypeError, match="vectors must be WordVectors"):
        D.encode([["a"]], {"a": [1]})


def test_load_imdb_embeds_time_major_with_labels(corpus):
    acl, vec = corpus
    tr = D.load_imdb(acl, vec, "train", T=5)
    v = tr.vectors
    assert tr.u.shape == (5, 6, 3) and backend.is_array(tr.u)
    assert tr.y.shape == (6, 1) and backend.to_numpy(tr.y).ravel().tolist() == [0, 0, 0, 1, 1, 1]
    u = backend.to_numpy(tr.u)
    # review 3_9 (pos, 4th): "A good movie." -> a, good, movie, front-padded to 5
    assert not u[:2, 4].any()
    assert u[2:, 4].tolist() == [VEC["a"], VEC["good"], VEC["movie"]]
    # review 1_2 (neg, 2nd): "A bad movie. I don't like it." -> a bad movie i dont (first 5)
    assert u[:, 1].tolist() == [VEC["a"], VEC["bad"], VEC["movie"], [0, 0, 0], VEC["dont"]]
    assert tr.stats["split"] == "train" and tr.stats["positive"] == 3
    assert tr.stats["reviews_empty"] == 1                   # "Worst. Ever!": no known word
    assert np.array_equal(backend.to_numpy(D.embed(tr.tokens, v)), u)
    te = D.load_imdb(acl, vec, "test", T=5)                 # only the words these reviews use
    assert sorted(te.vectors.words) == ["a", "bad", "good", "movie", "plot", "the"]
    train, test = D.load_splits(acl, vec, T=5, embed_inputs=False)
    assert train.u is None and test.vectors is train.vectors and "dont" in train.vectors
    assert test.stats["reviews"] == 4 and test.tokens.shape == (5, 4)
    with pytest.raises(ValueError, match="dimension 3, but dim = 4"):
        D.load_imdb(acl, train.vectors, "test", dim=4)


def test_synthetic_corpus_goes_through_the_same_loader(tmp_path):
    acl, vec = D.write_synthetic(tmp_path / "syn", n_per_class=4, dim=5, seed=3)
    tr, te = D.load_splits(acl, vec, T=10)
    assert tr.u.shape == (10, 8, 5) and te.stats["reviews"] == 8
    assert tr.stats["positive"] == 4 and tr.stats["tokens_in_reviews"] > 0
    acl2, _ = D.write_synthetic(tmp_path / "syn2", n_per_class=4, dim=5, seed=3)
    assert [open(r.path).read() for r in D.list_reviews(acl2)] == \
        [open(r.path).read() for r in D.list_reviews(acl)]


# ------------------------------------------------------------------------------ the experiment
def _fixture_settings(corpus, tmp_path, **kw):
    acl, vec = corpus
    return dict(data=str(acl), vectors=str(vec), T=5, hidden=3, epochs=2, batch_size=2,
                out=str(tmp_path / "out"), progress=False, **kw)


def test_run_on_a_fixture_writes_the_record_and_figures(corpus, tmp_path):
    rec = X.run(verbose=False, **_fixture_settings(corpus, tmp_path))
    out = tmp_path / "out"
    on_disk = record.load(out)
    assert on_disk["experiment"] == "imdb" and rec["methods"] == ["adjoint", "coadjoint", "lstm"]
    assert sorted(on_disk["runs"]) == ["adjoint", "coadjoint", "lstm"]
    assert on_disk["figures"] == ["test_error.png", "adjoint_norms.png"]
    for f in on_disk["figures"]:
        assert (out / f).stat().st_size > 1000
    for m, run in on_disk["runs"].items():
        rows = run["epochs"]
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        assert {"test_F", "test_error", "test_G", "lam1", "lamT"} <= set(rows[0])
        assert "grad_time_s" in rows[1] and rows[1]["grad_time_s"] > 0
        assert ("train_G" in rows[1]) == (m == "coadjoint")
        assert len(run["adjoint_norms"]["2"]) == 5
    data = on_disk["data"]
    assert data["train"]["reviews"] == 6 and data["test"]["reviews"] == 4
    assert data["vectors"]["dim"] == 3 and data["policy"]["pad"] == "front"
    assert on_disk["settings"]["data"] == str(corpus[0])


def test_epoch_0_loss_is_the_loss_of_the_embedded_test_set(corpus, tmp_path):
    """The per-minibatch embedding E[tokens] and the chunked evaluation give the loss of the
    embedded test set at the initial parameters (for the RNN and the LSTM)."""
    s = _fixture_settings(corpus, tmp_path, eval_batch=3)
    rec = X.run(verbose=False, **s)
    te = D.load_imdb(s["data"], s["vectors"], "test", T=5)
    P = rnn.init_params(3, 3, 1, seed=0)
    F0 = float(rnn.loss(P, te.u, te.y, activation="tanh", output="sigmoid", loss="bce"))
    assert abs(rec["runs"]["adjoint"]["epochs"][0]["test_F"] - F0) < 1e-12
    assert rec["runs"]["coadjoint"]["epochs"][0]["test_F"] == \
        rec["runs"]["adjoint"]["epochs"][0]["test_F"]              # same init
    Q = lstm.init_params(3, 3, 1, seed=0)
    F0 = float(lstm.loss(Q, te.u, te.y, output="sigmoid", loss="bce"))
    assert abs(rec["runs"]["lstm"]["epochs"][0]["test_F"] - F0) < 1e-12
    one = X.run(verbose=False, **dict(s, eval_batch=1000, out=str(tmp_path / "one")))
    for m in rec["runs"]:
        for a, b in zip(rec["runs"][m]["epochs"], one["runs"][m]["epochs"]):
            for k in ("test_F", "test_error", "test_G", "lam1", "lamT"):
                assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15), (m, k)


def test_tiny_synthetic_run_repeats_exactly(tmp_path):
    a = X.run(verbose=False, **dict(X.TINY, out=str(tmp_path / "a"), progress=False))
    b = X.run(verbose=False, **dict(X.TINY, out=str(tmp_path / "b"), progress=False))
    assert record.comparable(record.load(tmp_path / "a")) == \
        record.comparable(record.load(tmp_path / "b"))
    assert a["data"]["reviews_folder"] == os.path.join("synthetic_data", "aclImdb")
    assert a["data"]["source"] == "synthetic" and b["settings"]["synthetic"]


def test_settings_errors_before_any_file(tmp_path, corpus):
    out = tmp_path / "o"
    with pytest.raises(ValueError, match=r"needs the reviews and word vectors; data and vectors "
                                         r"not given.*ai\.stanford\.edu.*nlp\.stanford\.edu.*"
                                         r"--synthetic"):
        X.run(out=str(out), verbose=False)
    with pytest.raises(ValueError, match="vectors not given"):
        X.run(data=str(corpus[0]), out=str(out), verbose=False)
    with pytest.raises(ValueError, match="not both"):
        X.run(synthetic=True, data="x", out=str(out), verbose=False)
    for bad, message in ((dict(pad="middle"), "pad must be one of front, back"),
                         (dict(unknown="x"), "unknown must be one of zero, skip"),
                         (dict(T=1), "T must be >= 2"), (dict(method="gru"), "unknown method"),
                         (dict(alpha=-1.0), "alpha must be >= 0"),
                         (dict(optimizer="rmsprop"), "unknown optimizer"),
                         (dict(n_train=1), "n_train must be >= 2")):
        with pytest.raises(ValueError, match=message):
            X.run(verbose=False, **dict(_fixture_settings(corpus, tmp_path), out=str(out), **bad))
    with pytest.raises(TypeError, match="unknown imdb setting"):
        X.run(verbose=False, nosuch=1)
    with pytest.raises(FileNotFoundError, match="ai.stanford.edu"):
        X.run(verbose=False, **dict(_fixture_settings(corpus, tmp_path), out=str(out),
                                    data=str(tmp_path / "missing")))
    # run made the (empty) results folder ready before reading the data; nothing was written
    assert not out.exists() or not any(out.iterdir())
    other = write_vectors(tmp_path / "other.txt", {"xylophone": [1.0, 2.0], "zebra": [3.0, 4.0]})
    with pytest.raises(ValueError, match="none of the first 5 tokens of the 6 training reviews "
                                         "has a vector in .*other.txt"):
        X.run(verbose=False, **dict(_fixture_settings(corpus, tmp_path), out=str(out),
                                    vectors=str(other)))


def test_cli_arguments_and_exit_codes(corpus, tmp_path, capsys):
    import argparse
    p = argparse.ArgumentParser()
    X.add_arguments(p)
    assert vars(p.parse_args([])) == X.DEFAULTS
    s = cli.experiment_settings("imdb", X, ["--quick", "--synthetic", "--epochs", "1"])
    assert s["n_train"] == X.QUICK["n_train"] and s["epochs"] == 1 and s["synthetic"]
    acl, vec = corpus
    argv = ["run", "imdb", "--data", str(acl), "--vectors", str(vec), "--T", "4", "--hidden",
            "2", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "cli")]
    assert cli.main(argv) == 0
    assert "final test error" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["experiment"] == "imdb"
    assert cli.main(["run", "imdb", "--no-progress", "--out", str(tmp_path / "x")]) == 2
    assert "--data FOLDER" in capsys.readouterr().err


CUPY_OK, CUPY_WHY = backend.cupy_available()


@pytest.mark.skipif(not CUPY_OK, reason="CuPy/GPU not available: " + CUPY_WHY)
@pytest.mark.gpu
def test_cupy_run_matches_numpy(tmp_path):
    kw = dict(X.TINY, progress=False)
    with backend.use_backend("numpy"):  # the reference on the host, whatever the suite's backend
        a = X.run(verbose=False, out=str(tmp_path / "np"), **kw)
    with backend.use_backend("cupy"):
        b = X.run(verbose=False, out=str(tmp_path / "cp"), **kw)
    assert b["backend"] == "cupy"
    for m in a["runs"]:
        for ra, rb in zip(a["runs"][m]["epochs"], b["runs"][m]["epochs"]):
            for k in ("test_F", "test_G", "lam1", "lamT", "train_F"):
                if k in ra:
                    assert rb[k] == pytest.approx(ra[k], rel=1e-9), (m, k)
            assert rb["test_error"] == ra["test_error"]
