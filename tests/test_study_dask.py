"""Studies on Dask: any experiment over seeds x settings, a results store, and workers that die.

- the grid, seeds and spec parsing, and the store's keys;
- a study on a LocalCluster of 2 workers, one of whose processes is killed (SIGKILL) while it
  trains a run, completes with the records of an undisturbed study (timing fields aside); the
  killed run is taken up from its training state;
- re-running a study skips its finished runs;
- a study against ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1
  (``--scheduler tcp://127.0.0.1:PORT``), shut down afterwards.

Skipped with the reason when Dask's distributed scheduler is not installed
(``pip install 'manualgrad[study]'``).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from manualgrad import cli
from manualgrad.experiments import REGISTRY, adding, record, store, study

pytestmark = pytest.mark.only_backend("numpy", reason="studies run worker processes on NumPy")

# about 1-2 s of training per run on one shared core
SETTINGS = dict(T=10, n_train=256, n_test=64, hidden=8, batch_size=16, epochs=8,
                optimizer="adam", blas_threads=1)
GRID = {"hidden": [6, 8]}


@pytest.fixture(autouse=True)
def _one_code_version(monkeypatch):
    """Other sessions may commit while a test runs; the tests compare studies of one code."""
    monkeypatch.setattr(store, "code_version", lambda: "test")


def _distributed():
    return pytest.importorskip("distributed", reason="Dask's distributed scheduler is not "
                                                     "installed: pip install 'manualgrad[study]'")


def _records(folder):
    """The study's records without timing fields, by run id."""
    out = {}
    for d in sorted(os.listdir(os.path.join(folder, "runs"))):
        out[d] = record.comparable(record.load(os.path.join(folder, "runs", d)))
    return out


# ------------------------------------------------------------------------------ parsing
def test_seeds_grid_and_settings_are_parsed_with_the_experiments_types():
    assert study.parse_seeds("0-3") == (0, 1, 2, 3)
    assert study.parse_seeds("0-2,7,1") == (0, 1, 2, 7)
    with pytest.raises(Exception, match="seeds"):
        study.parse_seeds("a-b")
    g = study.parse_grid(adding, ["hidden=4,8", "lr_adam=0.01,1e-3"])
    assert g == {"hidden": [4, 8], "lr_adam": [0.01, 1e-3]}
    assert study.parse_grid(adding, ["clip=none"], values=False) == {"clip": None}
    with pytest.raises(ValueError, match="no setting 'nosuch'"):
        study.parse_grid(adding, ["nosuch=1"])
    tasks = study.study_tasks("adding", (0, 1), g, {"epochs": 1}, quick=True)
    assert len(tasks) == 8 and tasks[0]["seed"] == 0 and tasks[1]["seed"] == 1
    assert all(t["epochs"] == 1 and t["T"] == adding.QUICK.get("T", adding.DEFAULTS["T"])
               for t in tasks)
    with pytest.raises(ValueError, match="seeds go in --seeds"):
        study.study_tasks("adding", (0,), {"seed": [1, 2]})


def test_every_registered_experiment_can_be_a_study():
    for name, mod in REGISTRY.items():
        assert "seed" in mod.DEFAULTS, name
        assert study.study_tasks(name, (0, 1))[1]["seed"] == 1


def test_store_keys_name_experiment_settings_seed_and_code(tmp_path):
    s = dict(adding.DEFAULTS, seed=3, out="x", progress=True, resume=True)
    key = store.task_key("adding", s, code="v1")
    assert key["seed"] == 3 and key["code"] == "v1" and "out" not in key["settings"]
    assert "resume" not in key["settings"]
    assert store.task_id(key) == store.task_id(store.task_key("adding", dict(s, out="y"), "v1"))
    assert store.task_id(key) != store.task_id(store.task_key("adding", s, "v2"))
    assert store.task_id(key) != store.task_id(store.task_key("adding", dict(s, seed=4), "v1"))
    assert store.code_version() == "test"


def test_a_spec_file_gives_the_grid(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"seeds": "0-1", "grid": {"hidden": [4, 5]},
                                "settings": dict(SETTINGS, epochs=1), "scheduler": "inline"}))
    out = tmp_path / "study"
    assert cli.main(["study", "adding", "--spec", str(spec), "--out", str(out),
                     "--no-progress"]) == 0
    rec = json.loads((out / "study.json").read_text())
    assert rec["summary"] == {"tasks": 4, "done": 4, "resumed": 0, "finished": 0, "failed": 0}
    assert len(os.listdir(out / "runs")) == 4
    # run again: everything is skipped
    assert cli.main(["study", "adding", "--spec", str(spec), "--out", str(out),
                     "--no-progress"]) == 0
    assert json.loads((out / "study.json").read_text())["summary"]["finished"] == 4
    # a failing setting is refused before anything runs
    assert cli.main(["study", "adding", "--set", "optimizer=nosuch", "--scheduler", "inline",
                     "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    # and manualgrad report aggregates the study folder
    assert cli.main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").exists()


# ------------------------------------------------------------------------------ faults
def _wait_for_running_run(folder, timeout=60):
    """The id of a run that has written a training state and no record yet."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        runs = os.path.join(folder, "runs")
        for d in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
            ck = os.path.join(runs, d, "checkpoints")
            if (os.path.isdir(ck) and os.listdir(ck)
                    and not os.path.exists(os.path.join(runs, d, "results.json"))):
                return d
        time.sleep(0.02)
    return None


def test_a_study_survives_a_killed_worker_with_identical_records(tmp_path):
    _distributed()
    kw = dict(seeds=(0, 1), grid=GRID, settings=SETTINGS, progress=False, verbose=False,
              checkpoint_minutes=0.002)
    quiet = study.run_study("adding", scheduler="inline", out=str(tmp_path / "quiet"), **kw)
    assert quiet["summary"]["done"] == 4

    client, cluster = study.connect("local:2")
    try:
        out = str(tmp_path / "killed")
        result = {}
        thread = threading.Thread(target=lambda: result.update(rec=study.run_study(
            "adding", client=client, out=out, **kw)))
        thread.start()
        victim = _wait_for_running_run(out)
        assert victim is not None, "no run started within a minute"
        pids = client.run(os.getpid)                       # worker address -> pid
        where = [w for w, keys in client.processing().items() if victim in keys]
        os.kill(pids[where[0]] if where else next(iter(pids.values())), signal.SIGKILL)
        thread.join(timeout=240)
        assert not thread.is_alive()
    finally:
        client.close()
        cluster.close()
    rec = result["rec"]
    assert rec["summary"]["done"] == 4 and rec["summary"]["failed"] == 0, rec["tasks"]
    assert rec["summary"]["resumed"] >= 1, rec["tasks"]
    assert _records(out) == _records(str(tmp_path / "quiet"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_study_runs_on_a_dask_scheduler_and_two_workers_over_tcp(tmp_path):
    distributed = _distributed()
    dask_cli = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask_cli is None:
        pytest.skip("the 'dask' command is not on the PATH")
    port = _free_port()
    address = "tcp://127.0.0.1:%d" % port
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for i in range(2):
            procs.append(subprocess.Popen(
                [dask_cli, "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--no-dashboard", "--name", "w%d" % i, "--local-directory", str(tmp_path)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
        out = tmp_path / "study"
        argv = ["study", "adding", "--seeds", "0-1", "--grid", "hidden=4,5", "--scheduler",
                address, "--out", str(out), "--no-progress"]
        for k, v in dict(SETTINGS, epochs=2).items():
            argv += ["--set", "%s=%s" % (k, v)]
        assert cli.main(argv) == 0
        rec = json.loads((out / "study.json").read_text())
        assert rec["summary"]["done"] == 4 and rec["workers"] == 2
        assert len([t for t in rec["tasks"] if t["status"] == "done"]) == 4
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_a_longer_study_survives_two_killed_workers(tmp_path):
    _distributed()
    kw = dict(seeds=(0, 1, 2, 3), grid={"hidden": [6, 8], "lr_adam": [1e-3, 1e-2]},
              settings=dict(SETTINGS, epochs=12), progress=False, verbose=False,
              checkpoint_minutes=0.002)
    quiet = study.run_study("adding", scheduler="inline", out=str(tmp_path / "quiet"), **kw)
    client, cluster = study.connect("local:2")
    try:
        out = str(tmp_path / "killed")
        result = {}
        thread = threading.Thread(target=lambda: result.update(rec=study.run_study(
            "adding", client=client, out=out, **kw)))
        thread.start()
        for _ in range(2):
            victim = _wait_for_running_run(out)
            pids = client.run(os.getpid)
            where = [w for w, keys in client.processing().items() if victim in keys]
            os.kill(pids[where[0]] if where else next(iter(pids.values())), signal.SIGKILL)
            time.sleep(3)
        thread.join(timeout=900)
    finally:
        client.close()
        cluster.close()
    assert result["rec"]["summary"]["failed"] == 0
    assert _records(out) == _records(str(tmp_path / "quiet"))
    assert quiet["summary"]["done"] == 16


def test_the_ltg_cell_study_reads_its_finished_runs_back(tmp_path, monkeypatch):
    kw = dict(seeds=(0,), alphas=(0.5,), scales=("fan_in",), hidden=(3,), n=60, n_test=20, T=4,
              epochs=1, workers=1, out=str(tmp_path), verbose=False, progress=False)
    first = study.run_ltg_study(**kw)
    assert len(os.listdir(tmp_path / "runs")) == 2          # adjoint and coadjoint
    assert not any((tmp_path / "runs" / d / "checkpoints").exists()
                   for d in os.listdir(tmp_path / "runs"))
    trained = []
    monkeypatch.setattr(study.ltg, "train_method", lambda *a, **k: trained.append(a))
    second = study.run_ltg_study(**kw)
    assert not trained
    assert json.dumps(second["cells"]) == json.dumps(first["cells"])
