"""manualgrad on CuPy against its own matmul floor, torch.cuda (cuDNN) and NumPy.

For each size (T, B, p, m) and dtype, in one process, alternating the contenders repeat by repeat
(the device is synchronised before every clock reading; medians over ``--repeat`` runs):

- ``fused``: ``manualgrad.rnn.loss_and_grad`` (tanh hidden units, sigmoid head, BCE, l = 1) with
  the default fused mode ("auto": the strategy it picks is printed), and each strategy forced:
  ``steps`` (one cuBLAS product and one kernel per step), ``persistent`` (one cooperative kernel
  for the whole recurrence) and ``unfused`` (the NumPy path on CuPy arrays: many small kernels);
- ``floor``: the 2T per-step products alone, W_rec x_{t-1} and W_rec^T lam_z_k, (B, m) @ (m, m),
  through the cheapest call CuPy offers (cuBLAS on raw pointers, as the steps strategy calls it),
  preallocated; the issue's target is gradient <= 1.3x this floor;
- ``torch``: torch.cuda ``nn.RNN`` (tanh) + ``nn.Linear`` + ``BCEWithLogitsLoss``, forward and
  ``torch.autograd.grad`` of every parameter; TF32 off (``torch.backends.cudnn.allow_tf32`` and
  ``torch.backends.cuda.matmul.allow_tf32`` = False) so float32 is float32. Only when torch is
  installed: it is never a dependency of manualgrad;
- ``numpy``: the same gradient on the host (NumPy, all CPU cores), ``--numpy-repeat`` runs.

The LSTM (``--lstm-sizes``): manualgrad's fused and unfused LSTM gradient against ``nn.LSTM``.

    python benchmarks/bench_gpu.py --json results/bench_gpu.json
    python benchmarks/bench_gpu.py --sizes 784x256x1x256 --dtype float32 --repeat 20

Needs CuPy and a CUDA GPU (the script stops with the reason otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

import numpy as np  # noqa: E402

from manualgrad import backend, gpu, rnn  # noqa: E402
from manualgrad.cells import lstm  # noqa: E402

sys.path.insert(0, HERE)
from bench_rnn import parse_size  # noqa: E402

RNN_SIZES = ("50x64x5x128", "100x1024x32x512", "784x256x1x256", "200x2048x16x512")
LSTM_SIZES = ("100x1024x32x256",)


def _sync():
    import cupy
    cupy.cuda.Device().synchronize()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    except ImportError:
        pass


def time_alternating(fns, repeat, warmup):
    """{name: median seconds} of the callables run in turn, repeat by repeat, after warm-up."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for i in range(repeat):
        names = list(fns)
        names = names[i % len(names):] + names[:i % len(names)]  # rotate the order
        for k in names:
            _sync()
            t0 = time.perf_counter()
            fns[k]()
            _sync()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------- contenders
def _host_data(T, B, p, seed=0):
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal((T, B, p)), (rng.random((B, 1)) < 0.5).astype(np.float64)


def manualgrad_grad(cell, params, T, B, p, fused):
    """A callable computing one gradient of ``cell`` (rnn or lstm) on the active backend, with
    fused mode ``fused``."""
    u, y = _host_data(T, B, p)
    u, y = backend.asarray(u), backend.asarray(y)

    def gradient():
        with backend.use_backend(fused=fused):
            return cell.loss_and_grad(params, u, y)
    return gradient


def manualgrad_rnn(T, B, p, m, fused):
    return manualgrad_grad(rnn, rnn.init_params(p, m, 1, seed=0), T, B, p, fused)


def manualgrad_lstm(T, B, p, m, fused):
    return manualgrad_grad(lstm, lstm.init_params(p, m, 1, seed=0, forget_bias=1.0), T, B, p,
                           fused)


def cublas_floor(T, B, m, dtype):
    """The 2T per-step products alone, on preallocated operands, through gpu's cuBLAS call."""
    cp = backend.xp()
    rng = np.random.default_rng(2)
    W = cp.asarray(rng.uniform(-1, 1, (m, m)), dtype=dtype)
    x = cp.asarray(rng.uniform(-1, 1, (T + 1, B, m)), dtype=dtype)
    z = cp.asarray(rng.uniform(-1, 1, (T, B, m)), dtype=dtype)
    lz = cp.asarray(rng.uniform(-1, 1, (T, B, m)), dtype=dtype)
    lam = cp.empty((T, B, m), dtype=dtype)
    fwd = gpu._Gemm(dtype, B, m, m, trans_b=True)
    bwd = gpu._Gemm(dtype, B, m, m, trans_b=False)
    row = B * m * np.dtype(dtype).itemsize
    Wp, xp_, zp, lzp, lp = W.data.ptr, x.data.ptr, z.data.ptr, lz.data.ptr, lam.data.ptr

    def products():
        for t in range(T):
            fwd(zp + t * row, xp_ + t * row, Wp, 1.0)          # z_t += W_rec x_{t-1}
        for k in range(T - 1, -1, -1):
            bwd(lp + max(k - 1, 0) * row, lzp + k * row, Wp, 0.0)  # lambda_{k-1} = W^T lz_k
    return products


def cupy_matmul_floor(T, B, m, dtype):
    """The same 2T products through ``cupy.matmul(..., out=...)`` (for comparison)."""
    cp = backend.xp()
    rng = np.random.default_rng(2)
    W = cp.asarray(rng.uniform(-1, 1, (m, m)), dtype=dtype)
    x = cp.asarray(rng.uniform(-1, 1, (T + 1, B, m)), dtype=dtype)
    lz = cp.asarray(rng.uniform(-1, 1, (T, B, m)), dtype=dtype)
    z = cp.empty((T, B, m), dtype=dtype)
    lam = cp.empty((T, B, m), dtype=dtype)
    WT = W.T

    def products():
        for t in range(T):
            cp.matmul(x[t], WT, out=z[t])
        for k in range(T - 1, 0, -1):
            cp.matmul(lz[k], W, out=lam[k - 1])
        cp.matmul(lz[0], W, out=lam[0])
    return products


def torch_available():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def torch_grad(kind, T, B, p, m, dtype):
    """torch.cuda nn.RNN / nn.LSTM + Linear + BCEWithLogits: forward and grad of every parameter."""
    import torch
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    torch.manual_seed(0)
    net = (torch.nn.RNN(p, m, nonlinearity="tanh") if kind == "rnn" else torch.nn.LSTM(p, m))
    net = net.to("cuda", dt)
    head = torch.nn.Linear(m, 1).to("cuda", dt)
    u, y = _host_data(T, B, p)
    u = torch.as_tensor(u, dtype=dt, device="cuda")
    y = torch.as_tensor(y, dtype=dt, device="cuda")
    loss = torch.nn.BCEWithLogitsLoss()
    params = list(net.parameters()) + list(head.parameters())

    def gradient():
        out, _ = net(u)
        return torch.autograd.grad(loss(head(out[-1]), y), params)
    return gradient


def numpy_time(make, T, B, p, m, dtype, repeat):
    with backend.use_backend("numpy", dtype):
        f = make(T, B, p, m, False)
        f()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def launch_costs(B, m, dtype, calls=2000):
    """Microseconds per call, host-bound (tiny (B, m)): what each kind of step call costs."""
    cp = backend.xp()
    rng = np.random.default_rng(3)
    a = cp.asarray(rng.uniform(-1, 1, (B, m)), dtype=dtype)
    W = cp.asarray(rng.uniform(-1, 1, (m, m)), dtype=dtype)
    out = cp.empty((B, m), dtype=dtype)
    gemm = gpu._Gemm(dtype, B, m, m, trans_b=True)
    act = gpu._kernel("rnn_step_forward", dtype, "tanh")
    grid, block, n = gpu._grid(B * m), (gpu._BLOCK,), np.int64(B * m)
    ap, Wp, op = a.data.ptr, W.data.ptr, out.data.ptr
    cases = {
        "cublas_gemm_raw": lambda: gemm(op, ap, Wp, 1.0),
        "rawkernel_launch": lambda: act(grid, block, (ap, op, n)),
        "cupy_matmul_out": lambda: cp.matmul(a, W.T, out=out),
        "cupy_tanh_out": lambda: cp.tanh(a, out=out),
        "cupy_add_inplace": lambda: out.__iadd__(a),
    }
    res = {}
    for name, f in cases.items():
        for _ in range(50):
            f()
        _sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        _sync()
        res[name + "_us"] = 1e6 * (time.perf_counter() - t0) / calls
    return res


# ----------------------------------------------------------------------------- runs
def bench_rnn(size, dtype, args, torch):
    T, B, p, m = size
    row = {"cell": "rnn", "T": T, "B": B, "p": p, "m": m, "dtype": dtype}
    with backend.use_backend("cupy", dtype):
        row["auto_strategy"] = gpu.strategy_for(B, m)
        fns = {"fused": manualgrad_rnn(T, B, p, m, True),
               "steps": manualgrad_rnn(T, B, p, m, "steps"),
               "floor": cublas_floor(T, B, m, dtype),
               "cupy_matmul_floor": cupy_matmul_floor(T, B, m, dtype)}
        if B * m * m <= args.persistent_max:
            fns["persistent"] = manualgrad_rnn(T, B, p, m, "persistent")
        if not args.no_unfused:
            fns["unfused"] = manualgrad_rnn(T, B, p, m, False)
        if torch is not None:
            fns["torch"] = torch_grad("rnn", T, B, p, m, dtype)
        row.update({k + "_ms": 1e3 * v for k, v in
                    time_alternating(fns, args.repeat, args.warmup).items()})
    if args.numpy_repeat:
        row["numpy_ms"] = 1e3 * numpy_time(manualgrad_rnn, T, B, p, m, dtype, args.numpy_repeat)
    return row


def bench_lstm(size, dtype, args, torch):
    T, B, p, m = size
    row = {"cell": "lstm", "T": T, "B": B, "p": p, "m": m, "dtype": dtype}
    with backend.use_backend("cupy", dtype):
        fns = {"fused": manualgrad_lstm(T, B, p, m, True)}
        if not args.no_unfused:
            fns["unfused"] = manualgrad_lstm(T, B, p, m, False)
        if torch is not None:
            fns["torch"] = torch_grad("lstm", T, B, p, m, dtype)
        row.update({k + "_ms": 1e3 * v for k, v in
                    time_alternating(fns, args.repeat, args.warmup).items()})
    if args.numpy_repeat:
        row["numpy_ms"] = 1e3 * numpy_time(manualgrad_lstm, T, B, p, m, dtype, args.numpy_repeat)
    return row


def environment(torch):
    cp = backend.xp() if backend.get_backend() == "cupy" else None
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    env = {"python": platform.python_version(), "numpy": np.__version__, "cupy": cupy.__version__,
           "gpu": name.decode() if isinstance(name, bytes) else str(name),
           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
           "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if torch is not None:
        env["torch"] = torch.__version__
        env["cudnn"] = torch.backends.cudnn.version()
    del cp
    return env


def _fmt(row, key):
    v = row.get(key + "_ms")
    return "-" if v is None else ("%.2f" % v if v < 100 else "%.0f" % v)


def _ratio(row, a, b):
    if row.get(a + "_ms") is None or row.get(b + "_ms") is None:
        return "-"
    return "%.2f" % (row[a + "_ms"] / row[b + "_ms"])


def tables(rows):
    out = ["| cell | T | B | p | m | dtype | auto | fused (ms) | steps | persistent | unfused | "
           "floor (2T cuBLAS) | cp.matmul floor | torch.cuda | numpy | fused/floor | "
           "fused/torch | numpy/fused |",
           "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: "
           "| ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append("| %s | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
                   "| %s | %s | %s |" % (
                       r["cell"], r["T"], r["B"], r["p"], r["m"], r["dtype"],
                       r.get("auto_strategy", "steps"), _fmt(r, "fused"), _fmt(r, "steps"),
                       _fmt(r, "persistent"), _fmt(r, "unfused"), _fmt(r, "floor"),
                       _fmt(r, "cupy_matmul_floor"), _fmt(r, "torch"), _fmt(r, "numpy"),
                       _ratio(r, "fused", "floor"), _ratio(r, "fused", "torch"),
                       _ratio(r, "numpy", "fused")))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                    help="RNN sizes TxBxpxm (default: %s)" % " ".join(RNN_SIZES))
    ap.add_argument("--lstm-sizes", nargs="*", type=parse_size, default=None,
                    help="LSTM sizes (default: %s; none to skip)" % " ".join(LSTM_SIZES))
    ap.add_argument("--dtype", nargs="+", choices=("float32", "float64"),
                    default=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--numpy-repeat", type=int, default=3,
                    help="host NumPy runs per size (0 to skip NumPy)")
    ap.add_argument("--no-torch", action="store_true", help="skip torch.cuda even if installed")
    ap.add_argument("--no-unfused", action="store_true", help="skip the unfused CuPy path")
    ap.add_argument("--persistent-max", type=int, default=1 << 28,
                    help="time the persistent kernel only up to this B*m^2 (default 2^28)")
    ap.add_argument("--no-launch-costs", action="store_true",
                    help="skip the per-call cost of each kind of step call (B = 64, m = 128)")
    ap.add_argument("--json", help="write the environment and every number here")
    args = ap.parse_args(argv)
    ok, why = backend.cupy_available()
    if not ok:
        ap.exit(2, "bench_gpu.py needs CuPy and a CUDA GPU: %s\n" % why)
    torch = None if args.no_torch else torch_available()
    sizes = args.sizes or [parse_size(s) for s in RNN_SIZES]
    lstm_sizes = [parse_size(s) for s in LSTM_SIZES] if args.lstm_sizes is None else args.lstm_sizes
    with backend.use_backend("cupy"):
        env = environment(torch)
        if not args.no_launch_costs:
            for dtype in args.dtype:
                env["launch_costs_%s_B64_m128" % dtype] = launch_costs(64, 128, dtype)
    print("# " + json.dumps(env), flush=True)
    rows = []
    for size in sizes:
        for dtype in args.dtype:
            rows.append(bench_rnn(size, dtype, args, torch))
            print(json.dumps(rows[-1]), flush=True)
    for size in lstm_sizes:
        for dtype in args.dtype:
            rows.append(bench_lstm(size, dtype, args, torch))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(tables(rows))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"environment": env, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
