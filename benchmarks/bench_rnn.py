"""Time the vanilla-RNN gradient against the matrix products it cannot avoid.

For each size (T, B, p, m) and dtype this measures, in one run and alternating repeat by repeat:

(a) ``manualgrad.rnn.loss_and_grad(params, u, y)``: tanh hidden units, sigmoid output, BCE,
    l = 1, y in {0, 1} of shape (B, 1); the time of one gradient, validation included;
(b) the *matmul floor*: exactly the matrix products that gradient needs, in the order and on the
    shapes that ``manualgrad/rnn.py`` uses, on preallocated operands and outputs, so that
    nothing but the products is timed::

        forward   (T*B, p) @ (p, m)          W_in u_t for all t        1
                  (B, m) @ (m, m)            W_rec x_{t-1}             T
                  (B, m) @ (m, l)            W_out x_T                 1
        adjoint   (B, l) @ (l, m)            lambda_T = W_out^T d      1   (JP 7)
                  (B, m) @ (m, m)            lambda_{k-1}, lambda_0    T   (JP 8; T-1 + lambda_0)
        gradient  (m, T*B) @ (T*B, m)        dF/dW_rec                 1   (JP 12)
                  (m, T*B) @ (T*B, p)        dF/dW_in                  1   (JP 13)
                  (l, B) @ (B, m)            dF/dW_out                 1   (JP 9)

(c) the ratio (a)/(b) and the share of (a) that (b) is. The target of the issue is (a)/(b) <= 1.3.

Medians over ``--repeat`` runs after ``--warmup`` runs, timed with ``time.perf_counter``; on the
cupy backend the device is synchronised before each clock reading. The table also gives the minor
page faults per gradient (process-wide, from ``getrusage``): each is the kernel handing a fresh
zeroed page to a newly allocated array, and on the numpy backend they are most of (a) - (b) for
small sizes. ``--keep-freed-memory`` removes them (glibc ``mallopt``), ``--threads N`` fixes the
number of BLAS threads.

Run ``python benchmarks/bench_rnn.py --help``; see benchmarks/README.md.
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

sys.path.insert(0, HERE)  # _threads
from _threads import THREAD_VARS, apply_threads_flag  # noqa: E402

if __name__ == "__main__":
    apply_threads_flag(sys.argv)  # BLAS reads its thread count when numpy is imported

import numpy as np  # noqa: E402

from manualgrad import backend, rnn  # noqa: E402

DEFAULT_SIZES = ("50x64x5x128", "784x32x1x128")
L_OUT = 1  # one sigmoid output (binary classification, as in the LTG task)


# ----------------------------------------------------------------------------- timing
def _synchronize():
    """Wait for the device (cupy); nothing to wait for on numpy."""
    if backend.get_backend() == "cupy":
        backend.xp().cuda.Device().synchronize()


def _clock():
    _synchronize()
    return time.perf_counter()


def time_alternating(fns, repeat, warmup):
    """Run every callable in ``fns`` (a dict) ``warmup`` times, then ``repeat`` times in turn.

    Alternating the callables repeat by repeat exposes them to the same drift (frequency
    scaling, other processes). Returns {name: list of seconds}.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = _clock()
            f()
            times[k].append(_clock() - t0)
    return times


# ----------------------------------------------------------------------------- problem
def process_clock():
    """CPU time of the process (all threads): steadier than wall time on a shared machine."""
    _synchronize()
    return time.process_time()


def time_interleaved(fns, repeat, warmup, clock):
    """Warm up, then time every callable once per repeat, rotating their order each repeat.

    Returns ({name: list of seconds}, {name: minor page faults per call}); index i of every
    list is repeat i (the pairs of the per-repeat ratios).
    """
    names = list(fns)
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in names}
    faults = {k: 0 for k in names}
    for i in range(repeat):
        for j in range(len(names)):
            k = names[(i + j) % len(names)]
            f0 = _minor_faults()
            t0 = clock()
            fns[k]()
            times[k].append(clock() - t0)
            faults[k] += _minor_faults() - f0
    return times, {k: v / repeat for k, v in faults.items()}


def pair_summary(times, num, den):
    """Ratio of medians and median (quartiles) of the per-repeat ratios times[num] / times[den]."""
    a, b = statistics.median(times[num]), statistics.median(times[den])
    pairs = [x / y for x, y in zip(times[num], times[den])]
    q = statistics.quantiles(pairs, n=4) if len(pairs) >= 2 else [pairs[0]] * 3
    return {"ratio_of_medians": a / b, "median_pair_ratio": statistics.median(pairs),
            "pair_ratio_q1": q[0], "pair_ratio_q3": q[2]}


def parse_size(text):
    try:
        T, B, p, m = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("size must be TxBxpxm, e.g. 50x64x5x128; got %r" % text)
    if min(T, B, p, m) < 1:
        raise argparse.ArgumentTypeError("every entry of size %r must be >= 1" % text)
    return T, B, p, m


def make_problem(T, B, p, m, seed=0):
    """params, u (T,B,p), y (B,1) in {0,1} on the active backend and dtype."""
    params = rnn.init_params(p, m, L_OUT, seed=seed)
    rng = backend.host_rng(seed + 1)
    u = backend.asarray(rng.standard_normal((T, B, p)))
    y = backend.asarray((rng.random((B, L_OUT)) < 0.5).astype(np.float64))
    return params, u, y


def matmul_floor(T, B, p, m, l=L_OUT, seed=0):
    """A callable doing only the matrix products of one gradient (see the module docstring).

    Operands are preallocated and filled with values of the right size (|x| < 1 as after tanh);
    every product writes into a preallocated output with ``matmul(..., out=...)``. Per-step
    operands and outputs are slices of (T, B, m) arrays, as in rnn.py.
    """
    xp = backend.xp()
    rng = backend.host_rng(seed + 2)

    def arr(*shape):
        return backend.asarray(rng.uniform(-1.0, 1.0, size=shape))

    W_rec, W_in, W_out = arr(m, m), arr(m, p), arr(l, m)
    u, x, lam_z, d_out = arr(T, B, p), arr(T + 1, B, m), arr(T, B, m), arr(B, l)
    z, lam = arr(T, B, m), arr(T, B, m)  # outputs of the per-step products
    o_in, o, lam0 = arr(T * B, m), arr(B, l), arr(B, m)
    g_rec, g_in, g_out = arr(m, m), arr(m, p), arr(l, m)
    matmul = xp.matmul
    u2, x_prev, lz2 = u.reshape(T * B, p), x[:-1].reshape(T * B, m), lam_z.reshape(T * B, m)

    def products():
        matmul(u2, W_in.T, out=o_in)  # W_in u_t, all t
        for t in range(T):
            matmul(x[t], W_rec.T, out=z[t])  # W_rec x_{t-1}
        matmul(x[T], W_out.T, out=o)  # W_out x_T
        matmul(d_out, W_out, out=lam[T - 1])  # (7) lambda_T
        for k in range(T - 1, 0, -1):
            matmul(lam_z[k], W_rec, out=lam[k - 1])  # (8)
        matmul(lam_z[0], W_rec, out=lam0)  # lambda_0
        matmul(lz2.T, x_prev, out=g_rec)  # (12)
        matmul(lz2.T, u2, out=g_in)  # (13)
        matmul(d_out.T, x[T], out=g_out)  # (9)

    return products


def floor_flops(T, B, p, m, l=L_OUT):
    """Floating-point operations (2 per multiply-add) of the products in :func:`matmul_floor`."""
    return 2 * (T * B * p * m + T * B * m * m + B * m * l + B * l * m + T * B * m * m
                + m * T * B * m + m * T * B * p + l * B * m)


def keep_freed_memory():
    """Ask glibc (``mallopt``) to keep freed memory for reuse instead of returning it to the OS.

    By default glibc often gives large freed blocks back to the kernel (``munmap``, or trimming
    the top of the heap), so the next array of that size is paid for again in page faults (the
    kernel zeroes each page on first touch); whether it does depends on the allocator's history.
    With ``--keep-freed-memory`` that cost disappears for arrays up to 32 MiB (glibc's largest
    mmap threshold); the difference between runs with and without it is the allocation cost.
    Returns True on success; glibc only (Linux).
    """
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 2 ** 20)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30))


def peak_bytes(fn):
    """tracemalloc peak of one call of ``fn`` above the memory traced just before it (bytes),
    after one untimed call (first-call allocations: imports, caches, workspace buffers)."""
    import tracemalloc
    fn()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def new_host_memory(fn):
    """Peak new host memory (bytes) of one call of ``fn`` in steady state (:func:`peak_bytes`;
    with a workspace: only its small results). None on cupy, whose device memory tracemalloc
    does not see."""
    return None if backend.get_backend() == "cupy" else peak_bytes(fn)


def _minor_faults():
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_one(size, dtype, repeat, warmup):
    T, B, p, m = size
    with backend.use_backend(None, dtype):
        params, u, y = make_problem(T, B, p, m)
        floor = matmul_floor(T, B, p, m)

        def gradient():
            return rnn.loss_and_grad(params, u, y)

        F, grads = gradient()
        assert grads["W_rec"].dtype == np.dtype(dtype), grads["W_rec"].dtype
        faults = _minor_faults()
        times = time_alternating({"gradient": gradient, "floor": floor}, repeat, warmup)
        faults = (_minor_faults() - faults) / (repeat + warmup)  # the floor allocates nothing
        new_memory = new_host_memory(gradient)
    a = statistics.median(times["gradient"])
    b = statistics.median(times["floor"])
    return {
        "T": T, "B": B, "p": p, "m": m, "l": L_OUT, "dtype": dtype,
        "backend": backend.get_backend(), "repeat": repeat, "warmup": warmup,
        "gradient_s": a, "floor_s": b, "ratio": a / b, "floor_fraction": b / a,
        "floor_gflops": floor_flops(T, B, p, m) / b / 1e9,
        "gradient_min_s": min(times["gradient"]), "floor_min_s": min(times["floor"]),
        "page_faults_per_gradient": faults, "new_host_bytes_per_gradient": new_memory,
        "workspace": backend.workspace() is not None,
        "loss": float(backend.to_numpy(F)),
    }


# ----------------------------------------------------------------------------- environment
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _openblas_wheel_info():
    """Threads and kernel of the OpenBLAS in a numpy wheel (best effort, without threadpoolctl)."""
    import ctypes
    import glob
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    if not libs:
        return "threadpoolctl not installed; no bundled OpenBLAS found"
    try:
        lib = ctypes.CDLL(libs[0])
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "64_"), ("openblas", "")):
            threads = getattr(lib, "%s_get_num_threads%s" % (prefix, suffix), None)
            core = getattr(lib, "%s_get_corename%s" % (prefix, suffix), None)
            if threads is not None and core is not None:
                core.restype = ctypes.c_char_p
                return {"internal_api": "openblas", "num_threads": int(threads()),
                        "architecture": core().decode()}
    except OSError:
        pass
    return "threadpoolctl not installed"


def environment():
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "backend": backend.get_backend(),
    }
    if hasattr(os, "sched_getaffinity"):
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    try:  # numpy >= 1.25
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        env["blas"] = "%s %s" % (deps["blas"].get("name"), deps["blas"].get("version"))
    except Exception:  # older numpy: show_config only prints
        env["blas"] = "unknown (see numpy.show_config())"
    try:
        from threadpoolctl import threadpool_info
        env["threadpools"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                                      "threading_layer", "architecture")}
                              for d in threadpool_info()]
    except ImportError:
        env["threadpools"] = _openblas_wheel_info()
    for var in THREAD_VARS:
        if os.environ.get(var):
            env[var] = os.environ[var]
    if backend.get_backend() == "cupy":
        cp = backend.xp()
        env["cupy"] = cp.__version__
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"]
        env["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        env["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
    return env


# ----------------------------------------------------------------------------- output
def markdown_table(rows):
    head = ("| T | B | p | m | dtype | (a) gradient (ms) | (b) matmul floor (ms) | (a)/(b) "
            "| (b) share of (a) | floor GFLOP/s | page faults / gradient "
            "| new host KiB / gradient | <= 1.15x |")
    lines = [head, "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: "
                   "| ---: | --- |"]
    for r in rows:
        kib = r.get("new_host_bytes_per_gradient")
        lines.append("| %d | %d | %d | %d | %s | %.3f | %.3f | %.2f | %.0f %% | %.1f | %.0f | %s | %s |"
                     % (r["T"], r["B"], r["p"], r["m"], r["dtype"], 1e3 * r["gradient_s"],
                        1e3 * r["floor_s"], r["ratio"], 100 * r["floor_fraction"],
                        r["floor_gflops"], r["page_faults_per_gradient"],
                        "-" if kib is None else "%.0f" % (kib / 1024),
                        "yes" if r["ratio"] <= 1.15 else "no"))
    return "\n".join(lines)


def add_common_arguments(ap, default_sizes, dtypes=("float32", "float64"), repeat=20,
                         clock=False):
    """The options every benchmark script shares (backend, dtype, sizes, repeats, threads, ...)."""
    ap.add_argument("--backend", default="numpy", choices=backend.BACKENDS)
    ap.add_argument("--dtype", nargs="+", default=list(dtypes), choices=backend.DTYPES,
                    help="one or more dtypes (default: both)")
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=None, metavar="TxBxpxm",
                    help="default: %s" % " ".join(default_sizes))
    ap.add_argument("--repeat", type=int, default=repeat, help="timed runs per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    if clock:
        ap.add_argument("--clock", default="wall", choices=("wall", "process"),
                        help="wall: time.perf_counter; process: time.process_time (CPU time of "
                             "all threads; use with --threads 1). Default wall")
    ap.add_argument("--threads", type=int, default=None, metavar="N",
                    help="BLAS threads (sets %s before numpy is imported; "
                         "default: the BLAS default)" % ", ".join(THREAD_VARS))
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="call glibc mallopt so that freed arrays are reused without new page "
                         "faults (shows how much of the time is allocation; see keep_freed_memory)")
    ap.add_argument("--no-workspace", action="store_true",
                    help="fresh arrays at every call (backend.set_workspace(False)): the engine "
                         "before workspaces, for before/after comparisons")
    ap.add_argument("--json", metavar="PATH", help="also save environment and results here")


def check_common_arguments(ap, args, default_sizes):
    """Check the shared options, select the backend; returns the list of sizes."""
    if args.repeat < 1 or args.warmup < 0:
        ap.error("--repeat must be >= 1 and --warmup >= 0")
    if args.threads is not None and (args.threads < 1 or any(
            os.environ.get(v) != str(args.threads) for v in THREAD_VARS)):
        ap.error("--threads N needs N >= 1 and must be given on the command line of this script "
                 "(it is applied before numpy is imported)")
    try:
        backend.set_backend(args.backend)
    except RuntimeError as exc:  # cupy requested where there is no usable GPU
        ap.error(str(exc))
    backend.set_workspace(not args.no_workspace)  # loss_and_grad's default: this thread's
    if getattr(args, "clock", "wall") == "process" and args.backend == "cupy":
        ap.error("--clock process measures host CPU time; on cupy use the default wall clock")
    return args.sizes or [parse_size(s) for s in default_sizes]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(ap, DEFAULT_SIZES)
    args = ap.parse_args(argv)
    sizes = check_common_arguments(ap, args, DEFAULT_SIZES)
    env = environment()
    env["blas_threads_flag"] = args.threads
    env["workspace"] = not args.no_workspace
    if args.keep_freed_memory:
        env["keep_freed_memory"] = keep_freed_memory()
        if not env["keep_freed_memory"]:
            print("warning: --keep-freed-memory: mallopt unavailable (not glibc?)", file=sys.stderr)
    print("# manualgrad RNN gradient vs matmul floor")
    for k, v in env.items():
        print("- %s: %s" % (k, v))
    print(flush=True)
    rows = []
    for size in sizes:
        for dtype in args.dtype:
            r = bench_one(size, dtype, args.repeat, args.warmup)
            rows.append(r)
            print("  T=%d B=%d p=%d m=%d %s: gradient %.3f ms, floor %.3f ms, ratio %.2f"
                  % (r["T"], r["B"], r["p"], r["m"], dtype, 1e3 * r["gradient_s"],
                     1e3 * r["floor_s"], r["ratio"]), file=sys.stderr)
    print("Median over %d repeats after %d warm-up runs; (a) = rnn.loss_and_grad "
          "(tanh, sigmoid, bce, l = 1), (b) = its matrix products alone.\n"
          % (args.repeat, args.warmup))
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=2)
        print("\nsaved %s" % args.json)
    return rows


if __name__ == "__main__":
    main()
