"""Time one gradient of the LSTM against one of the vanilla RNN (issue 4; JP Table I).

JP Table I gives the time of one SGD parameter update on the IMDB task: 0.0011 s for their
adjoint-trained simple RNN and 0.0245-0.0260 s for their LSTM after the first epoch (22x-24x;
0.0139 s against 0.0023 s, 6x, in epoch 1). An LSTM does 4x the matrix work of a vanilla RNN of
the same hidden size m (four gate blocks), so this engine's target is an LSTM gradient within
**5x** of the vanilla RNN's. For each size (T, B, p, m) and dtype this script measures, in one
run and interleaved repeat by repeat (the order rotating from repeat to repeat):

(r) **RNN**: ``rnn.loss_and_grad(params, u, y)``: tanh hidden units, sigmoid head, BCE, l = 1;
(L) **LSTM**: ``cells.lstm.loss_and_grad(params, u, y, output="sigmoid", loss="bce")``;
(M) **momentum LSTM** (extra row): ``cells.momentum_lstm.loss_and_grad`` (mu = s = 0.6);
(fr) the RNN's **matmul floor** (``bench_rnn.matmul_floor``: the products of one RNN gradient);
(fL) the LSTM's **matmul floor**: exactly the matrix products one LSTM gradient needs, in the
     order and on the shapes that ``manualgrad/cells/lstm.py`` uses, on preallocated operands
     and outputs (``out=``), so that nothing but the products is timed::

        forward   (T*B, p) @ (p, 4m)         W_x u_t for all t              1
                  (B, m) @ (m, 4m)           W_h h_{t-1}                    T
                  (B, m) @ (m, l)            W_out h_T                      1
        BPTT      (B, l) @ (l, m)            lam_T = W_out^T d              1
                  (B, 4m) @ (4m, m)          lam_{k-1} = W_h^T zeta_k       T   (T-1 + lam_0)
        gradient  (4m, T*B) @ (T*B, m+p)     dF/dW = sum zeta_k [h;u]^T     1
                  (l, B) @ (B, m)            dF/dW_out                      1

All three gradients see the same u (T, B, p) ~ N(0, 1) and y in {0, 1} (``bench_rnn.make_problem``)
and default initialisations (weights N(0, 1/fan_in), zero biases). Input checks are included:
they are part of a gradient.

Reported per size and dtype: the median time of each, the ratio LSTM/RNN both as the **ratio of
the medians** and as the **median of the per-repeat ratios** L_i / r_i (the two runs of repeat i
see the same machine load; on a shared machine this is the steadier number; the verdict against
5x uses it), the same for the momentum LSTM, the ratio of the floors fL/fr (what the products
alone impose) and each model's gradient over its own floor (how much of its time is not matrix
products: element-wise work, allocation, Python). ``--clock process`` times with the process's
CPU time instead of wall time (less disturbed by other jobs; counts every BLAS thread, so use it
with ``--threads 1``).

Run ``python benchmarks/bench_lstm.py --help``; see benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)  # _threads, and bench_rnn: timing, RNN floor, environment
from _threads import apply_threads_flag  # noqa: E402

if __name__ == "__main__":
    apply_threads_flag(sys.argv)  # BLAS reads its thread count when numpy is imported

import numpy as np  # noqa: E402

import bench_rnn  # noqa: E402
from manualgrad import backend, rnn  # noqa: E402
from manualgrad.cells import lstm, momentum_lstm  # noqa: E402

DEFAULT_SIZES = ("50x64x5x128",)
L_OUT = 1
TARGET = 4.5  # LSTM / RNN, time per gradient (issue 17; issue 4 asked 5)
PAPER_RATIOS = {"epoch 1": 0.0139 / 0.0023, "epochs 25-250": (0.0245 / 0.0011, 0.0260 / 0.0011)}
MODELS = ("rnn", "lstm", "momentum_lstm")


# ----------------------------------------------------------------------------- LSTM floor
def lstm_matmul_floor(T, B, p, m, l=L_OUT, seed=0):
    """A callable doing only the matrix products of one LSTM gradient (see the module docstring).

    Operands are preallocated (|values| < 1, as after the gates); every product writes into a
    preallocated output with ``matmul(..., out=...)``. Per-step operands and outputs are slices
    of (T, B, .) arrays, and W_h is used as lstm.py uses it: (m, 4m) contiguous for the forward
    (W_h^T), (4m, m) contiguous for BPTT; dF/dW is one product over [h_{k-1}; u_k] (T*B, m+p).
    """
    xp = backend.xp()
    rng = backend.host_rng(seed + 4)

    def arr(*shape):
        return backend.asarray(rng.uniform(-1.0, 1.0, size=shape))

    W_hT, W_h, W_xT, W_out = arr(m, 4 * m), arr(4 * m, m), arr(p, 4 * m), arr(l, m)
    u, h, d_out = arr(T, B, p), arr(T + 1, B, m), arr(B, l)
    X = arr(T, B, m + p)  # [h_{k-1}; u_k], as lstm._gradients concatenates them
    a, zeta = arr(T, B, 4 * m), arr(T, B, 4 * m)
    rec, o, lam, lam0 = arr(B, 4 * m), arr(B, l), arr(T, B, m), arr(B, m)
    g_W, g_out = arr(4 * m, m + p), arr(l, m)
    matmul = xp.matmul
    u2, a2 = u.reshape(T * B, p), a.reshape(T * B, 4 * m)
    Z, X2 = zeta.reshape(T * B, 4 * m), X.reshape(T * B, m + p)

    def products():
        matmul(u2, W_xT, out=a2)  # W_x u_t, all t
        for t in range(T):
            matmul(h[t], W_hT, out=rec)  # W_h h_{t-1}
        matmul(h[T], W_out.T, out=o)  # W_out h_T
        matmul(d_out, W_out, out=lam[T - 1])  # lam_T
        for t in range(T - 1, 0, -1):
            matmul(zeta[t], W_h, out=lam[t - 1])  # lam_{k-1} = W_h^T zeta_k
        matmul(zeta[0], W_h, out=lam0)  # lam_0
        matmul(Z.T, X2, out=g_W)  # dF/dW
        matmul(d_out.T, h[T], out=g_out)  # dF/dW_out

    return products


def lstm_floor_flops(T, B, p, m, l=L_OUT):
    """Floating-point operations (2 per multiply-add) of :func:`lstm_matmul_floor`."""
    return 2 * (T * B * p * 4 * m + T * B * m * 4 * m + B * m * l + B * l * m
                + T * B * 4 * m * m + 4 * m * T * B * (m + p) + l * B * m)


# ----------------------------------------------------------------------------- timing
# ----------------------------------------------------------------------------- problem
def make_problem(T, B, p, m, seed=0):
    """RNN params, LSTM params, u (T, B, p), y (B, 1) on the active backend and dtype."""
    params_rnn, u, y = bench_rnn.make_problem(T, B, p, m, seed=seed)
    params_lstm = lstm.init_params(p, m, L_OUT, seed=seed)
    return params_rnn, params_lstm, u, y


def bench_one(size, dtype, repeat, warmup, clock, floors=True, momentum=True):
    T, B, p, m = size
    with backend.use_backend(None, dtype):
        pr, pl, u, y = make_problem(T, B, p, m)
        fns = {
            "rnn": lambda: rnn.loss_and_grad(pr, u, y, output="sigmoid", loss="bce"),
            "lstm": lambda: lstm.loss_and_grad(pl, u, y, output="sigmoid", loss="bce"),
        }
        if momentum:
            fns["momentum_lstm"] = lambda: momentum_lstm.loss_and_grad(
                pl, u, y, output="sigmoid", loss="bce")
        losses = {}
        for name, f in fns.items():  # one checked call of each: right dtype, finite
            F, grads = f()
            for k, g in grads.items():
                assert g.dtype == np.dtype(dtype), (name, k, g.dtype)
                assert bool(backend.xp().isfinite(g).all()), (name, k)
            losses[name] = float(backend.to_numpy(F))
        if floors:
            fns["floor_rnn"] = bench_rnn.matmul_floor(T, B, p, m)
            fns["floor_lstm"] = lstm_matmul_floor(T, B, p, m)
        times, faults = bench_rnn.time_interleaved(fns, repeat, warmup, clock)
        new_memory = {k: bench_rnn.new_host_memory(fns[k]) for k in fns if not k.startswith("floor")}
    row = {"T": T, "B": B, "p": p, "m": m, "l": L_OUT, "dtype": dtype,
           "backend": backend.get_backend(), "repeat": repeat, "warmup": warmup,
           "loss": losses, "page_faults": faults, "times_s": times,
           "new_host_bytes": new_memory, "workspace": backend.workspace() is not None}
    for k in times:
        row[k + "_s"] = statistics.median(times[k])
    row["lstm/rnn"] = bench_rnn.pair_summary(times, "lstm", "rnn")
    if momentum:
        row["momentum_lstm/rnn"] = bench_rnn.pair_summary(times, "momentum_lstm", "rnn")
    if floors:
        row["floor_lstm/floor_rnn"] = bench_rnn.pair_summary(times, "floor_lstm", "floor_rnn")
        row["lstm/floor_lstm"] = bench_rnn.pair_summary(times, "lstm", "floor_lstm")
        row["rnn/floor_rnn"] = bench_rnn.pair_summary(times, "rnn", "floor_rnn")
        row["floor_flop_ratio"] = lstm_floor_flops(T, B, p, m) / bench_rnn.floor_flops(T, B, p, m)
        row["floor_rnn_gflops"] = bench_rnn.floor_flops(T, B, p, m) / row["floor_rnn_s"] / 1e9
        row["floor_lstm_gflops"] = lstm_floor_flops(T, B, p, m) / row["floor_lstm_s"] / 1e9
    return row


# ----------------------------------------------------------------------------- output
def _pr(s):
    return "%.2f (%.2f-%.2f)" % (s["median_pair_ratio"], s["pair_ratio_q1"], s["pair_ratio_q3"])


def markdown_table(rows):
    head = ("| T | B | p | m | dtype | RNN (ms) | LSTM (ms) | LSTM / RNN: ratio of medians "
            "| median of pair ratios (quartiles) | momentum LSTM (ms) | momentum LSTM / RNN: "
            "median of pair ratios | page faults / gradient (RNN, LSTM, mLSTM) "
            "| new host KiB / gradient (RNN, LSTM, mLSTM) | <= 4.5x |")
    sep = "|" + " ---: |" * 4 + " --- |" + " ---: |" * 6 + " --- | --- | --- |"
    lines = [head, sep]
    for r in rows:
        s, pf = r["lstm/rnn"], r["page_faults"]
        has_m = "momentum_lstm/rnn" in r
        nm = r.get("new_host_bytes") or {}
        kib = ", ".join("-" if nm.get(k) is None else "%.0f" % (nm[k] / 1024)
                        for k in ("rnn", "lstm", "momentum_lstm"))
        lines.append(("| %d | %d | %d | %d | %s | %.3f | %.3f | %.2f | %s | %s | %s "
                      "| %.0f, %.0f, %s | " + kib + " | %s |")
                     % (r["T"], r["B"], r["p"], r["m"], r["dtype"], 1e3 * r["rnn_s"],
                        1e3 * r["lstm_s"], s["ratio_of_medians"], _pr(s),
                        "%.3f" % (1e3 * r["momentum_lstm_s"]) if has_m else "-",
                        _pr(r["momentum_lstm/rnn"]) if has_m else "-", pf["rnn"], pf["lstm"],
                        "%.0f" % pf["momentum_lstm"] if has_m else "-",
                        "yes" if s["median_pair_ratio"] <= TARGET else "no"))
    return "\n".join(lines)


def floor_table(rows):
    head = ("| T | B | p | m | dtype | RNN floor (ms) | LSTM floor (ms) | floor LSTM / RNN "
            "(flops: x) | floor GFLOP/s (RNN, LSTM) | RNN / its floor | LSTM / its floor "
            "| LSTM: floor share | LSTM above its floor (ms) | RNN above its floor (ms) |")
    sep = "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: " \
          "| ---: | ---: |"
    lines = [head, sep]
    for r in rows:
        lines.append("| %d | %d | %d | %d | %s | %.3f | %.3f | %s (%.2f) | %.1f, %.1f | %s | %s "
                     "| %.0f %% | %.3f | %.3f |"
                     % (r["T"], r["B"], r["p"], r["m"], r["dtype"], 1e3 * r["floor_rnn_s"],
                        1e3 * r["floor_lstm_s"], _pr(r["floor_lstm/floor_rnn"]),
                        r["floor_flop_ratio"], r["floor_rnn_gflops"], r["floor_lstm_gflops"],
                        _pr(r["rnn/floor_rnn"]), _pr(r["lstm/floor_lstm"]),
                        100 * r["floor_lstm_s"] / r["lstm_s"],
                        1e3 * (r["lstm_s"] - r["floor_lstm_s"]),
                        1e3 * (r["rnn_s"] - r["floor_rnn_s"])))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_rnn.add_common_arguments(ap, DEFAULT_SIZES, dtypes=("float64", "float32"), repeat=30,
                                   clock=True)
    ap.add_argument("--no-floor", dest="floors", action="store_false",
                    help="skip the matmul floors (faster)")
    ap.add_argument("--no-momentum", dest="momentum", action="store_false",
                    help="skip the momentum LSTM (its larger arrays change the allocator's "
                         "state, hence the page faults of the others)")
    args = ap.parse_args(argv)
    sizes = bench_rnn.check_common_arguments(ap, args, DEFAULT_SIZES)
    clock = bench_rnn._clock if args.clock == "wall" else bench_rnn.process_clock
    env = bench_rnn.environment()
    env["blas_threads_flag"] = args.threads
    env["workspace"] = not args.no_workspace
    env["clock"] = args.clock
    if hasattr(os, "getloadavg"):
        env["load_average_before"] = os.getloadavg()
    if args.keep_freed_memory:
        env["keep_freed_memory"] = bench_rnn.keep_freed_memory()
        if not env["keep_freed_memory"]:
            print("warning: --keep-freed-memory: mallopt unavailable (not glibc?)",
                  file=sys.stderr)
    print("# manualgrad: time per gradient, LSTM vs vanilla RNN (issue 4)")
    for k, v in env.items():
        print("- %s: %s" % (k, v))
    print(flush=True)
    rows = []
    for size in sizes:
        for dtype in args.dtype:
            r = bench_one(size, dtype, args.repeat, args.warmup, clock, args.floors,
                          args.momentum)
            rows.append(r)
            print("  T=%d B=%d p=%d m=%d %s: RNN %.3f ms, LSTM %.3f ms (x%.2f)%s%s"
                  % (r["T"], r["B"], r["p"], r["m"], dtype, 1e3 * r["rnn_s"], 1e3 * r["lstm_s"],
                     r["lstm/rnn"]["median_pair_ratio"],
                     (", momentum LSTM %.3f ms (x%.2f)" % (
                         1e3 * r["momentum_lstm_s"], r["momentum_lstm/rnn"]["median_pair_ratio"]))
                     if args.momentum else "",
                     (", floors x%.2f" % r["floor_lstm/floor_rnn"]["median_pair_ratio"])
                     if args.floors else ""),
                  file=sys.stderr, flush=True)
    if hasattr(os, "getloadavg"):
        env["load_average_after"] = os.getloadavg()
    print("One gradient = loss_and_grad (sigmoid head, BCE, l = 1; RNN: tanh; momentum LSTM: "
          "mu = s = 0.6); %s clock, median over %d repeats after %d warm-up runs, interleaved "
          "(order rotating). Pair ratios: median (quartiles) of LSTM_i / RNN_i. Target: LSTM / "
          "RNN <= %.0fx (judged on the median of pair ratios); JP Table I: %.1fx in epoch 1, "
          "%.1fx-%.1fx in epochs 25-250.\n"
          % (args.clock, args.repeat, args.warmup, TARGET, PAPER_RATIOS["epoch 1"],
             *PAPER_RATIOS["epochs 25-250"]))
    print(markdown_table(rows))
    if args.floors:
        print("\nMatrix products alone (floors: module docstring); X / its floor and the floor "
              "ratio are medians (quartiles) of pair ratios.\n")
        print(floor_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "target": TARGET, "paper_ratios": PAPER_RATIOS,
                       "results": rows}, f, indent=2)
        print("\nsaved %s" % args.json)
    return rows


if __name__ == "__main__":
    main()
