"""Time one training epoch of the vanilla RNN on pixel MNIST-5k, manualgrad vs torch CPU (issue 12.5).

"Speed on real sequences": the model and data of FW's Pixel-MNIST at this project's size::

    data     manualgrad.data.load("mnist-5k", view="pixels"): 4,000 training images as
             sequences u (T = 784, n = 4000, p = 1), one pixel per step, row-major, normalised
    model    z_t = W_rec x_{t-1} + W_in u_t + b1,  x_t = tanh(z_t)   (m = 128, x_0 = 0)
             o = W_out x_T + b2,  yhat = softmax(o)                    (l = 10, last step only)
    loss     cross-entropy of the integer labels, mean over the minibatch
    update   Adam (lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8) after every minibatch

One **epoch** = the 4,000 examples in a shuffled order, in minibatches of ``--batch-size``
(default 100: 40 updates). Per minibatch each contender gathers u[:, idx] (a (T, B, 1) copy),
computes the loss and its gradient, and takes one Adam step:

(mg)    manualgrad: ``rnn.loss_and_grad(params, ub, yb, output="softmax",
        loss="cross_entropy")`` (forward, BPTT/adjoint sweep and gradients, with the thread's
        default Workspace, i.e. the fast path of docs/workspace.md) and
        ``optim.Adam.step``;
(torch) ``torch.nn.RNN(1, 128, nonlinearity="tanh")`` + ``torch.nn.Linear(128, 10)``,
        ``F.cross_entropy``, ``loss.backward()``, ``torch.optim.Adam`` (same hyperparameters),
        on ``torch.from_numpy`` of the same gathered minibatch; ``torch.set_num_threads`` is set
        to the BLAS thread count. Only when torch is importable; never required.

Both start from the same weights (manualgrad's ``init_params``, copied into torch; torch's
second bias b_hh starts at 0 and is trained, as nn.RNN does) and see the same minibatches in the
same order, and a one-minibatch check before timing compares their loss and gradients, so the
two time the same computation. Repeats alternate the contenders (order rotating), each repeat a
new shuffled epoch; the time of an epoch is wall time (``time.perf_counter``), CPU time of the
process alongside. Reported per dtype: the median epoch time of each contender, the median of
the per-repeat ratios manualgrad/torch (quartiles), and whether manualgrad meets the target:
at or below torch's time.

Subnormal numbers: at T = 784 the adjoints of the untrained model vanish, and in float32 they
pass through the subnormal range (below 1.2e-38) for about a hundred steps, where x86 arithmetic
is many times slower; both contenders pay for it. ``--flush-denormal`` (diagnostic, needs torch)
sets flush-to-zero for the main thread to show how much.

``--quick`` times a few minibatches instead of a whole epoch (a smoke run in seconds);
``--profile`` adds a cProfile of one manualgrad epoch per dtype and a breakdown of one
minibatch into forward, loss, adjoint sweep, gradients and Adam, next to the matrix products
alone (``bench_rnn.matmul_floor``). Run ``python benchmarks/bench_pixel_mnist.py --help``;
see benchmarks/README.md; results in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing
sys.path.insert(0, HERE)  # _threads, bench_rnn: environment, floor, pair ratios
from _threads import apply_threads_flag  # noqa: E402

if __name__ == "__main__":
    apply_threads_flag(sys.argv)  # BLAS reads its thread count when numpy is imported

import numpy as np  # noqa: E402

import bench_rnn  # noqa: E402
from manualgrad import backend, data, rnn  # noqa: E402
from manualgrad.optim.adam import Adam  # noqa: E402

M_HIDDEN = 128
N_CLASSES = 10
LR = 1e-3
QUICK = {"batches": 3, "repeat": 2, "warmup": 1}


def _torch():
    """torch, or None when it is not installed (the benchmark never requires it)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


# ----------------------------------------------------------------------------- contenders
class ManualgradTrainer:
    """manualgrad: loss_and_grad (softmax head, cross-entropy) and an Adam step per minibatch."""

    name = "manualgrad"

    def __init__(self, params):
        self.params = dict(params)
        self.opt = Adam(lr=LR)

    def step(self, ub, yb):
        F, grads = rnn.loss_and_grad(self.params, ub, yb, output="softmax",
                                     loss="cross_entropy")
        self.params = self.opt.step(self.params, grads)
        return F

    def loss_and_grad(self, ub, yb):
        F, grads = rnn.loss_and_grad(self.params, ub, yb, output="softmax",
                                     loss="cross_entropy")
        return float(F), {k: np.asarray(v) for k, v in grads.items()}


class TorchTrainer:
    """torch CPU: nn.RNN (tanh) + nn.Linear on the last step, F.cross_entropy, backward, Adam."""

    name = "torch"

    def __init__(self, torch, params, dtype):
        self.torch = torch
        tdt = getattr(torch, dtype)
        m, p = params["W_in"].shape
        self.rnn = torch.nn.RNN(p, m, nonlinearity="tanh").to(tdt)
        self.head = torch.nn.Linear(m, params["W_out"].shape[0]).to(tdt)
        with torch.no_grad():  # the same starting point as manualgrad
            self.rnn.weight_ih_l0.copy_(torch.from_numpy(np.asarray(params["W_in"])))
            self.rnn.weight_hh_l0.copy_(torch.from_numpy(np.asarray(params["W_rec"])))
            self.rnn.bias_ih_l0.copy_(torch.from_numpy(np.asarray(params["b1"])))
            self.rnn.bias_hh_l0.zero_()
            self.head.weight.copy_(torch.from_numpy(np.asarray(params["W_out"])))
            self.head.bias.copy_(torch.from_numpy(np.asarray(params["b2"])))
        self.opt = torch.optim.Adam(list(self.rnn.parameters()) + list(self.head.parameters()),
                                    lr=LR, betas=(0.9, 0.999), eps=1e-8)

    def _loss(self, ub, yb):
        out, _ = self.rnn(self.torch.from_numpy(ub))
        return self.torch.nn.functional.cross_entropy(self.head(out[-1]),
                                                      self.torch.from_numpy(yb))

    def step(self, ub, yb):
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss(ub, yb)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def loss_and_grad(self, ub, yb):
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss(ub, yb)
        loss.backward()
        r, h = self.rnn, self.head
        grads = {"W_rec": r.weight_hh_l0.grad, "W_in": r.weight_ih_l0.grad,
                 "b1": r.bias_ih_l0.grad, "W_out": h.weight.grad, "b2": h.bias.grad}
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach()), {k: g.numpy().copy() for k, g in grads.items()}


def run_epoch(trainer, u, y, order, batch_size, batches):
    """``batches`` minibatches of ``order`` (all of them if None); returns the mean loss."""
    n = len(order) if batches is None else min(len(order), batches * batch_size)
    total, count = 0.0, 0
    losses = []
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        losses.append(trainer.step(u[:, idx], y[idx]))  # u[:, idx]: a fresh (T, B, 1) copy
        count += 1
    for F in losses:  # read after the epoch: no synchronisation inside the timed loop
        total += float(F)
    return total / count, count


# ----------------------------------------------------------------------------- one dtype
def agreement(trainers, u, y, batch_size):
    """Loss and max relative gradient difference of torch against manualgrad on one minibatch."""
    ub, yb = u[:, :batch_size], y[:batch_size]
    F0, g0 = trainers["manualgrad"].loss_and_grad(ub, yb)
    out = {"loss_manualgrad": F0}
    if "torch" in trainers:
        F1, g1 = trainers["torch"].loss_and_grad(ub, yb)
        out["loss_torch"] = F1
        out["grad_rel_diff"] = {k: float(np.abs(g1[k] - g0[k]).max()
                                         / max(np.abs(g0[k]).max(), 1e-300)) for k in g0}
    return out


def bench_dtype(dtype, args, torch):
    with backend.use_backend(None, dtype):
        (u, y), _ = data.load("mnist-5k", view="pixels")
        u = np.ascontiguousarray(backend.to_numpy(u))
        y = np.asarray(backend.to_numpy(y))
        T, n, p = u.shape
        params = rnn.init_params(p, M_HIDDEN, N_CLASSES, seed=args.seed)
        trainers = {"manualgrad": ManualgradTrainer(params)}
        if torch is not None:
            trainers["torch"] = TorchTrainer(torch, params, dtype)
        check = agreement(trainers, u, y, args.batch_size)
        rng = np.random.default_rng(args.seed)
        for tr in trainers.values():  # warm-up: workspace buffers, torch's allocator, caches
            run_epoch(tr, u, y, rng.permutation(n), args.batch_size, args.warmup)
        names = list(trainers)
        wall = {k: [] for k in names}
        cpu = {k: [] for k in names}
        loss = {k: [] for k in names}
        nb = None
        for i in range(args.repeat):
            order = rng.permutation(n)  # one shuffled epoch, the same for every contender
            for j in range(len(names)):
                k = names[(i + j) % len(names)]
                c0, t0 = time.process_time(), time.perf_counter()
                F, nb = run_epoch(trainers[k], u, y, order, args.batch_size, args.batches)
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
                loss[k].append(F)
            print("  %s repeat %d: %s" % (dtype, i + 1, ", ".join(
                "%s %.2f s" % (k, wall[k][-1]) for k in names)), file=sys.stderr, flush=True)
        row = {"dtype": dtype, "T": T, "n": n, "p": p, "m": M_HIDDEN, "l": N_CLASSES,
               "batch_size": args.batch_size, "minibatches": nb,
               "full_epoch": nb * args.batch_size >= n, "repeat": args.repeat,
               "warmup_minibatches": args.warmup, "check": check, "wall_s": wall, "cpu_s": cpu,
               "epoch_loss": loss}
        for k in names:
            row[k + "_s"] = statistics.median(wall[k])
            row[k + "_cpu_s"] = statistics.median(cpu[k])
        if "torch" in trainers:
            row["manualgrad/torch"] = bench_rnn.pair_summary(wall, "manualgrad", "torch")
            row["manualgrad/torch_cpu"] = bench_rnn.pair_summary(cpu, "manualgrad", "torch")
        if args.profile:
            row["profile"] = profile(trainers["manualgrad"], u, y, args, rng)
    return row


# ----------------------------------------------------------------------------- profile
def phases(params, ub, yb, repeat):
    """Median seconds of each phase of one manualgrad minibatch (the parts of loss_and_grad)."""
    params = rnn.check_params(params)
    ws = backend.workspace()
    opt = Adam(lr=LR)
    t = {k: [] for k in ("check_params", "forward", "loss", "adjoint", "gradients", "adam",
                         "matmul_floor")}
    T, B, p = ub.shape
    floor = bench_rnn.matmul_floor(T, B, p, M_HIDDEN, N_CLASSES)
    for _ in range(repeat + 1):
        c = time.perf_counter()
        rnn.check_params(params)
        c0 = time.perf_counter()
        traj = rnn._forward(params, ub, None, "tanh", "softmax", False, ws)
        c1 = time.perf_counter()
        _, _, F_b, delta_out, delta = rnn.head_terms(traj, "cross_entropy", yb)
        c2 = time.perf_counter()
        adj = rnn._adjoint(params, traj, delta_out, delta, ws)
        c3 = time.perf_counter()
        grads = rnn._gradients(traj, adj)
        c4 = time.perf_counter()
        opt.step(params, grads)
        c5 = time.perf_counter()
        floor()
        c6 = time.perf_counter()
        for k, d in zip(t, (c0 - c, c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4, c6 - c5)):
            t[k].append(d)
    return {k: statistics.median(v[1:]) for k, v in t.items()}


def profile(trainer, u, y, args, rng):
    """cProfile of one manualgrad epoch (top functions by own time) and the phase breakdown."""
    order = rng.permutation(u.shape[1])
    pr = cProfile.Profile()
    pr.enable()
    run_epoch(trainer, u, y, order, args.batch_size, args.batches)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(args.profile_top)
    idx = order[:args.batch_size]
    return {"cprofile": s.getvalue(),
            "phases_s": phases(trainer.params, u[:, idx], y[idx], repeat=3)}


# ----------------------------------------------------------------------------- output
def markdown_table(rows, threads, has_torch):
    head = ("| dtype | BLAS threads | minibatches x B | manualgrad (s / epoch) | torch (s / epoch) "
            "| manualgrad / torch: median of pair ratios (quartiles) | ratio of CPU times "
            "| manualgrad <= torch |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if has_torch:
            s, c = r["manualgrad/torch"], r["manualgrad/torch_cpu"]
            tt = "%.2f" % r["torch_s"]
            rat = "%.2f (%.2f-%.2f)" % (s["median_pair_ratio"], s["pair_ratio_q1"],
                                        s["pair_ratio_q3"])
            rc = "%.2f" % c["median_pair_ratio"]
            ok = "yes" if s["median_pair_ratio"] <= 1.0 else "no"
        else:
            tt = rat = rc = ok = "- (torch absent)"
        lines.append("| %s | %s | %d x %d | %.2f | %s | %s | %s | %s |"
                     % (r["dtype"], threads, r["minibatches"], r["batch_size"],
                        r["manualgrad_s"], tt, rat, rc, ok))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", nargs="+", default=["float32", "float64"], choices=backend.DTYPES)
    ap.add_argument("--batch-size", type=int, default=100, help="minibatch size (default 100)")
    ap.add_argument("--batches", type=int, default=None,
                    help="minibatches per timed epoch (default: all, 4000 / batch size)")
    ap.add_argument("--repeat", type=int, default=3, help="timed epochs per contender")
    ap.add_argument("--warmup", type=int, default=2, help="untimed minibatches per contender")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: --batches %(batches)d --repeat %(repeat)d --warmup %(warmup)d"
                         % QUICK)
    ap.add_argument("--threads", type=int, default=None, metavar="N",
                    help="BLAS threads and torch.set_num_threads (set before numpy is imported)")
    ap.add_argument("--no-torch", action="store_true", help="time manualgrad alone")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile one manualgrad epoch per dtype; phase breakdown")
    ap.add_argument("--profile-top", type=int, default=15, help="rows of the cProfile listing")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="diagnostic: torch.set_flush_denormal(True) (FTZ/DAZ on the main "
                         "thread, for both contenders; needs torch). Not the default: results "
                         "then differ from IEEE arithmetic where values underflow")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="also save environment and results here")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if args.batch_size < 1 or args.repeat < 1 or args.warmup < 0 or (
            args.batches is not None and args.batches < 1):
        ap.error("--batch-size, --repeat, --batches must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads N needs N >= 1")
    torch = None if args.no_torch else _torch()
    if args.flush_denormal and torch is None:
        ap.error("--flush-denormal sets the flag through torch, which is not importable here")
    env = bench_rnn.environment()
    env["blas_threads_flag"] = args.threads
    env["workspace"] = backend.workspace() is not None
    if torch is not None:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        env["flush_denormal"] = bool(args.flush_denormal and torch.set_flush_denormal(True))
    else:
        env["torch"] = "not used (--no-torch)" if args.no_torch else "absent (not importable)"
    if hasattr(os, "getloadavg"):
        env["load_average_before"] = os.getloadavg()
    print("# manualgrad vs torch CPU: one epoch of the vanilla RNN on pixel MNIST-5k (issue 12.5)")
    for k, v in env.items():
        print("- %s: %s" % (k, v))
    if torch is None:
        print("\ntorch is %s: timing manualgrad alone." % env["torch"].split(" ")[0])
    print(flush=True)
    rows = [bench_dtype(dt, args, torch) for dt in args.dtype]
    if hasattr(os, "getloadavg"):
        env["load_average_after"] = os.getloadavg()
        print("- load_average_after: %s" % (env["load_average_after"],))
    r0 = rows[0]
    print("\nOne epoch = %d minibatches of %d%s (T = %d, p = %d, m = %d, l = %d; tanh, softmax "
          "on the last step, cross-entropy, Adam lr %g): gather, forward, backward, update. "
          "Wall time, median over %d repeats after %d warm-up minibatches, contenders "
          "alternating; pair ratios: median (quartiles) of manualgrad_i / torch_i.\n"
          % (r0["minibatches"], args.batch_size,
             "" if r0["full_epoch"] else " (a partial epoch: --batches/--quick)", r0["T"],
             r0["p"], r0["m"], r0["l"], LR, args.repeat, args.warmup))
    print(markdown_table(rows, env.get("OPENBLAS_NUM_THREADS", "default"), torch is not None))
    print()
    for r in rows:
        c = r["check"]
        print("- %s check on one minibatch: loss manualgrad %.6f%s; mean loss of the last epoch: %s"
              % (r["dtype"], c["loss_manualgrad"],
                 (", torch %.6f, max relative gradient difference %.1e"
                  % (c["loss_torch"], max(c["grad_rel_diff"].values())))
                 if "loss_torch" in c else "",
                 ", ".join("%s %.4f" % (k, v[-1]) for k, v in r["epoch_loss"].items())))
    for r in rows:
        if "profile" in r:
            ph = r["profile"]["phases_s"]
            tot = sum(v for k, v in ph.items() if k != "matmul_floor")
            print("\n## %s: one minibatch of manualgrad, by phase (ms; median of 3)\n" % r["dtype"])
            print("| " + " | ".join(ph) + " | total (without floor) |")
            print("|" + " ---: |" * (len(ph) + 1))
            print("| " + " | ".join("%.1f" % (1e3 * v) for v in ph.values())
                  + " | %.1f |" % (1e3 * tot))
            print("\n## %s: cProfile of one manualgrad epoch (own time)\n" % r["dtype"])
            print("```\n" + r["profile"]["cprofile"].strip() + "\n```")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=2, default=str)
        print("\nsaved %s" % args.json)
    return rows


if __name__ == "__main__":
    main()
