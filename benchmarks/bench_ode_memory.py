"""Peak memory of the two neural-ODE gradients vs the number of steps (and the adjoint-order table).

For BW-NODE (``manualgrad.ode.node``, tanh, identity readout + mse) this measures, for each number
of solver steps N, the peak of the memory traced by ``tracemalloc`` (NumPy registers its array
data with tracemalloc, so this is the arrays plus the Python objects) during one
``node.loss_and_grad(params, h0, y, solver=..., steps=N, method=..., workspace=False)``, above
what was allocated before the call (without a workspace, so that the arrays a gradient needs are
allocated in the call and seen; with one they stay in the workspace between calls, and the
workspace then holds the same amount):

* ``method="discrete"`` stores the state at every step (``sol.zs``) for the reverse sweep, so its
  peak grows by one (B, n) state per step;
* ``method="continuous"`` (BW Theorem 1) integrates [h, a, a_theta] backward from h(T) and stores
  nothing, so its peak does not grow with N (only the host list of grid times does, 8-32 bytes
  per step);
* ``method="checkpointed", checkpoints=c`` (X-CKPT, ``manualgrad.ode.checkpoint``) stores c states
  and recomputes the others on Griewank's binomial schedule: at most c + 2 states whatever N, for
  T(N, c) - (N - 1) forward steps done again (``--budgets``; each row also gives the schedule's
  ``recomputed_steps`` and ``peak_states``).

Prints a markdown table (peak KiB, the growth per step in units of one state B*n*8 bytes, time
per call) and writes a figure; with ``--budgets`` a second table and a two-panel figure (peak
memory and time against N for every method, ``--ckpt-fig``). With ``--orders`` it also prints
the table of docs/ode.md "Measured orders": the relative gap between the continuous and the
discrete adjoint gradients as the step halves, per fixed-step solver, and the observed order
log2(gap(N) / gap(2N)).

    python benchmarks/bench_ode_memory.py                       # figure docs/figures/ode_memory.png
    python benchmarks/bench_ode_memory.py --threads 1 --steps 16 32 64 128 256 512 1024 \
        --budgets 2 4 8 16 --fig ''     # docs/figures/ode_checkpoint.png (docs/ode.md 4.1)
    python benchmarks/bench_ode_memory.py --orders --json results/ode_memory.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)  # _threads
from _threads import apply_threads_flag  # noqa: E402

if __name__ == "__main__":
    apply_threads_flag(sys.argv)

import numpy as np  # noqa: E402

from bench_rnn import peak_bytes  # noqa: E402  (tracemalloc peak of one call, after a warm-up)
from manualgrad.ode import node, solvers  # noqa: E402

FIG_DEFAULT = os.path.join(os.path.dirname(HERE), "docs", "figures", "ode_memory.png")
ORDER_FIG_DEFAULT = os.path.join(os.path.dirname(HERE), "docs", "figures", "ode_adjoint_order.png")
CKPT_FIG_DEFAULT = os.path.join(os.path.dirname(HERE), "docs", "figures", "ode_checkpoint.png")


def measure_memory(B, n, H, steps, solver, seed, budgets=()):
    """Peak traced bytes and seconds of one gradient per method and N; ``budgets``: also
    method="checkpointed" with each checkpoints=c (keys ``ckpt<c>_...``, with the schedule's
    ``recomputed_steps`` and ``peak_states``)."""
    rng = np.random.default_rng(seed)
    P = node.init_params(n, H, seed=seed)
    h0, y = rng.standard_normal((B, n)), rng.standard_normal((B, n))
    methods = [("continuous", {}), ("discrete", {})] + [
        ("ckpt%d" % c, {"method": "checkpointed", "checkpoints": c}) for c in budgets]
    rows = []
    for N in steps:
        row = {"steps": N}
        for key, kw in methods:
            kw = dict(kw) if kw else {"method": key}

            def call():  # fresh arrays: what one gradient needs (docs/workspace.md)
                return node.loss_and_grad(P, h0, y, solver=solver, steps=N, workspace=False,
                                          **kw)
            row[key + "_peak_bytes"] = peak_bytes(call)
            t = time.perf_counter()
            _, _, info = call()
            row[key + "_seconds"] = time.perf_counter() - t
            if kw["method"] == "checkpointed":
                row[key + "_recomputed_steps"] = info["recomputed_steps"]
                row[key + "_peak_states"] = info["peak_states"]
        rows.append(row)
    return rows


def print_checkpointed(rows, B, n, H, solver, budgets):
    state = B * n * 8
    print("\nAll methods incl. the checkpointed discrete adjoint (X-CKPT), BW-NODE n=%d, H=%d, "
          "B=%d, %s (one state = %.1f KiB); recomputed = forward steps done again, held = the "
          "schedule's peak_states\n" % (n, H, B, solver, state / 1024))
    keys = ["continuous", "discrete"] + ["ckpt%d" % c for c in budgets]
    names = {"continuous": "continuous", "discrete": "discrete"}
    names.update({"ckpt%d" % c: "checkpointed c=%d" % c for c in budgets})
    print("| steps | method | peak (KiB) | ms | recomputed | held |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        for k in keys:
            held = r.get(k + "_peak_states", r["steps"] + 1 if k == "discrete" else "")
            print("| %d | %s | %.0f | %.1f | %s | %s |" % (
                r["steps"], names[k], r[k + "_peak_bytes"] / 1024, 1e3 * r[k + "_seconds"],
                r.get(k + "_recomputed_steps", 0 if k == "discrete" else ""), held))
    a, b = rows[0], rows[-1]
    dn = b["steps"] - a["steps"]
    for k in keys:
        per = (b[k + "_peak_bytes"] - a[k + "_peak_bytes"]) / dn
        print("%s: growth %.3f states per step, time x%.2f of discrete at N=%d"
              % (names[k], per / state, b[k + "_seconds"] / b["discrete_seconds"], b["steps"]))


def plot_checkpointed(rows, B, n, H, solver, budgets, path):
    """Two panels against N: peak traced memory and time per gradient, every method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    N = [r["steps"] for r in rows]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    lines = [("discrete", "discrete (stores every state)", "o-"),
             ("continuous", "continuous (BW Theorem 1)", "s-")] + [
        ("ckpt%d" % c, "checkpointed, c = %d" % c, "^--") for c in budgets]
    for key, label, style in lines:
        ax.plot(N, [r[key + "_peak_bytes"] / 2 ** 20 for r in rows], style, label=label)
        bx.plot(N, [1e3 * r[key + "_seconds"] for r in rows], style, label=label)
    for a_, ylabel in ((ax, "peak traced memory (MiB)"), (bx, "time per gradient (ms)")):
        a_.set_xscale("log", base=2)
        a_.set_yscale("log")
        a_.set_xlabel("solver steps N (%s)" % solver)
        a_.set_ylabel(ylabel)
        a_.grid(True, which="both", alpha=0.3)
    ax.set_title("memory: checkpointed holds <= c + 2 states")
    bx.set_title("time: T(N, c) - (N - 1) steps recomputed")
    ax.legend(fontsize=8)
    fig.suptitle("BW-NODE gradient, n=%d, H=%d, B=%d" % (n, H, B))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print("wrote", path)


def print_memory(rows, B, n, H, solver):
    state = B * n * 8
    print("\nPeak traced memory of one loss_and_grad, BW-NODE n=%d, H=%d, B=%d, %s "
          "(one state = %.1f KiB)\n" % (n, H, B, solver, state / 1024))
    print("| steps | continuous peak (KiB) | discrete peak (KiB) | discrete / continuous "
          "| continuous ms | discrete ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        c, d = r["continuous_peak_bytes"], r["discrete_peak_bytes"]
        print("| %d | %.0f | %.0f | %.2f | %.1f | %.1f |" % (
            r["steps"], c / 1024, d / 1024, d / c, 1e3 * r["continuous_seconds"],
            1e3 * r["discrete_seconds"]))
    a, b = rows[0], rows[-1]
    dn = b["steps"] - a["steps"]
    for m in ("continuous", "discrete"):
        per = (b[m + "_peak_bytes"] - a[m + "_peak_bytes"]) / dn
        print("%s: growth %.1f bytes per step = %.3f states per step" % (m, per, per / state))


def plot_memory(rows, B, n, H, solver, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    N = [r["steps"] for r in rows]
    state = B * n * 8
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(N, [r["discrete_peak_bytes"] / 2 ** 20 for r in rows], "o-",
            label="discrete adjoint (stores every state)")
    ax.plot(N, [r["continuous_peak_bytes"] / 2 ** 20 for r in rows], "s-",
            label="continuous adjoint (BW Theorem 1)")
    ax.plot(N, [(rows[0]["discrete_peak_bytes"] + (k - N[0]) * state) / 2 ** 20 for k in N],
            "k:", lw=1, label="one (B, n) state per step")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("solver steps N (%s)" % solver)
    ax.set_ylabel("peak traced memory (MiB)")
    ax.set_title("BW-NODE gradient memory, n=%d, H=%d, B=%d" % (n, H, B))
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print("wrote", path)


# ----------------------------------------------------------------------------- orders
ORDER_STEPS = {"euler": (16, 32, 64, 128), "midpoint": (8, 16, 32, 64), "rk4": (4, 8, 16, 32)}


def measure_orders(seed=0):
    """Gap between continuous and discrete adjoint gradients (the tests' smooth problem)."""
    rng = np.random.default_rng(seed)
    P = node.init_params(3, 5, seed=2, l=2, bias_scale=0.3)
    h0, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    flat = lambda g: np.concatenate([np.ravel(g[k]) for k in sorted(g)])  # noqa: E731
    _, gref, _ = node.loss_and_grad(P, h0, y, solver="rk4", steps=400)
    out = {}
    for solver, steps in ORDER_STEPS.items():
        rows = []
        for N in steps:
            _, gd, _ = node.loss_and_grad(P, h0, y, solver=solver, steps=N)
            _, gc, _ = node.loss_and_grad(P, h0, y, solver=solver, steps=N, method="continuous")
            gap = np.linalg.norm(flat(gc) - flat(gd)) / np.linalg.norm(flat(gd))
            rows.append({"steps": N, "gap": float(gap),
                         "discrete_err": float(np.linalg.norm(flat(gd) - flat(gref))
                                               / np.linalg.norm(flat(gref))),
                         "continuous_err": float(np.linalg.norm(flat(gc) - flat(gref))
                                                 / np.linalg.norm(flat(gref)))})
        for a, b in zip(rows[:-1], rows[1:]):
            b["order"] = float(np.log2(a["gap"] / b["gap"]))
        out[solver] = rows
    return out


def print_orders(orders):
    print("\nContinuous vs discrete adjoint gradient (BW-NODE n=3, H=5, B=4, T=1, seed 2/0); "
          "gap = ||g_cont - g_disc|| / ||g_disc||; err = relative error vs RK4 with 400 steps\n")
    print("| solver | steps | gap (cont. vs disc.) | observed order | disc. err | cont. err |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for solver, rows in orders.items():
        for r in rows:
            print("| %s | %d | %.3e | %s | %.2e | %.2e |" % (
                solver, r["steps"], r["gap"], "%.3f" % r["order"] if "order" in r else "",
                r["discrete_err"], r["continuous_err"]))


def plot_orders(orders, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for solver, rows in orders.items():
        N = [r["steps"] for r in rows]
        g = [r["gap"] for r in rows]
        p = solvers.SOLVERS[solver].order
        ax.loglog(N, g, "o-", label="%s (observed %.2f)" % (solver, rows[-1]["order"]))
        ax.loglog(N, [g[0] * (N[0] / k) ** p for k in N], "k:", lw=1)
    ax.set_xlabel("steps N (h = 1/N)")
    ax.set_ylabel("||g_cont - g_disc|| / ||g_disc||")
    ax.set_title("Continuous vs discrete adjoint: gap ~ h^p (dotted: slope p)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print("wrote", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024])
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--solver", default="rk4", choices=[s for s in solvers.SOLVERS
                                                         if not solvers.SOLVERS[s].adaptive])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", type=int, nargs="*", default=[],
                    help="also method='checkpointed' with these checkpoints= (e.g. 2 4 8)")
    ap.add_argument("--ckpt-fig", default=CKPT_FIG_DEFAULT,
                    help="memory + time figure of all methods, with --budgets ('' for none)")
    ap.add_argument("--fig", default=FIG_DEFAULT, help="memory figure path ('' for none)")
    ap.add_argument("--orders", action="store_true", help="also the adjoint-order table + figure")
    ap.add_argument("--order-fig", default=ORDER_FIG_DEFAULT)
    ap.add_argument("--json", default=None, help="write every number here")
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads (before numpy import)")
    a = ap.parse_args(argv)
    print("python %s, numpy %s, %s" % (platform.python_version(), np.__version__,
                                       platform.processor() or platform.machine()))
    rows = measure_memory(a.B, a.n, a.H, a.steps, a.solver, a.seed, a.budgets)
    print_memory(rows, a.B, a.n, a.H, a.solver)
    if a.fig:
        plot_memory(rows, a.B, a.n, a.H, a.solver, a.fig)
    if a.budgets:
        print_checkpointed(rows, a.B, a.n, a.H, a.solver, a.budgets)
        if a.ckpt_fig:
            plot_checkpointed(rows, a.B, a.n, a.H, a.solver, a.budgets, a.ckpt_fig)
    record = {"settings": vars(a), "memory": rows}
    if a.orders:
        orders = measure_orders(a.seed)
        print_orders(orders)
        if a.order_fig:
            plot_orders(orders, a.order_fig)
        record["orders"] = orders
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as fh:
            json.dump(record, fh, indent=1)
        print("wrote", a.json)
    return record


if __name__ == "__main__":
    main()
