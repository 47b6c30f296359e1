"""Run manualgrad.gpu's CUDA kernels on the CPU: one OS thread per CUDA thread, real barriers.

The fused GPU path can only be timed on a GPU, but what its kernels compute can be checked
anywhere. This module compiles a kernel's CUDA source as C++20 for the host with a small shim:

- every CUDA thread of a launch is a ``std::thread`` (``threadIdx``/``blockIdx`` thread-local);
- ``__syncthreads()`` is a ``std::barrier`` of the block's threads, ``grid.sync()`` (cooperative
  groups) one of all threads of the launch, so a missing barrier shows up as a data race, as it
  would on the device;
- each ``__shared__`` array is rewritten into a slice of a per-block arena, shared by the block's
  threads and private to the block;
- the math functions are ``<cmath>``'s, with their float overloads.

:func:`kernel` returns a callable with CuPy's ``RawKernel`` calling convention
``k((grid,), (block,), args)``; pointers are Python ints (host addresses: NumPy's
``a.ctypes.data``) or NumPy arrays. :func:`fake_cublas` gives cuBLAS's column-major GEMM on host
pointers. tests/test_gpu_emulated.py swaps both into :mod:`manualgrad.gpu` and runs its whole
Python glue and kernels on NumPy buffers against the NumPy path of the engine.
"""
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

CXX = shutil.which("g++") or shutil.which("c++")

_SHIM = r"""
#include <barrier>
#include <cmath>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>
using std::tanh; using std::exp; using std::log1p; using std::fmax; using std::fabs;
struct emu_dim3 { unsigned x, y, z; };
static thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;
static std::vector<std::unique_ptr<std::barrier<>>> emu_block_barriers;
static std::unique_ptr<std::barrier<>> emu_grid_barrier;
static thread_local char* emu_arena;
static thread_local std::size_t emu_offset;
static void __syncthreads() { emu_block_barriers[blockIdx.x]->arrive_and_wait(); }
static void* emu_shared(std::size_t bytes) {
    void* p = emu_arena + emu_offset;
    emu_offset += (bytes + 63) & ~std::size_t(63);
    return p;
}
namespace cooperative_groups {
struct grid_group { void sync() { emu_grid_barrier->arrive_and_wait(); } };
static grid_group this_grid() { return grid_group(); }
}
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict

template <typename F>
static void emu_launch(unsigned grid, unsigned block, F body) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    emu_block_barriers.clear();
    for (unsigned b = 0; b < grid; ++b)
        emu_block_barriers.emplace_back(new std::barrier<>((std::ptrdiff_t)block));
    emu_grid_barrier.reset(new std::barrier<>((std::ptrdiff_t)grid * block));
    std::vector<std::vector<char>> arenas(grid, std::vector<char>(1 << 16));
    std::vector<std::thread> threads;
    threads.reserve((std::size_t)grid * block);
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([=, &arenas] {
                blockIdx = {b, 0, 0};
                threadIdx = {t, 0, 0};
                emu_arena = arenas[b].data();
                emu_offset = 0;
                body();
            });
    for (auto& th : threads) th.join();
}
"""

_PARAM = re.compile(r"^(?P<type>.*?)(?P<name>\w+)$")
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_SHARED = re.compile(r"__shared__\s+(\w+)\s+(\w+)((?:\[[^\]]+\])+)\s*;")


def available():
    """(True, "") when a C++20 compiler with std::barrier is here, else (False, reason)."""
    if CXX is None:
        return False, "no C++ compiler (g++) on PATH"
    try:
        _build("static int emu_probe() { std::barrier<> b(1); b.arrive_and_wait(); return 0; }")
    except RuntimeError as exc:
        return False, str(exc).splitlines()[0]
    return True, ""


def _shared_to_arena(src):
    def repl(m):
        t, name, dims = m.group(1), m.group(2), m.group(3)
        return "%s (&%s)%s = *reinterpret_cast<%s(*)%s>(emu_shared(sizeof(%s%s)));" % (
            t, name, dims, t, dims, t, dims)
    return _SHARED.sub(repl, src)


def _params(plist):
    out = []
    for p in plist.split(","):
        p = " ".join(p.replace("__restrict__", " ").split())
        m = _PARAM.match(p)
        out.append((m.group("type").strip(), m.group("name")))
    return out


def _ctype(t):
    if "*" in t:
        return ctypes.c_void_p
    return {"int": ctypes.c_int, "long long": ctypes.c_longlong,
            "unsigned": ctypes.c_uint}[t.replace("const ", "").strip()]


_LIBS = {}


def _build(code):
    key = hashlib.sha256(code.encode()).hexdigest()[:20]
    if key in _LIBS:
        return _LIBS[key]
    d = os.path.join(tempfile.gettempdir(), "manualgrad_cuda_emulator")
    os.makedirs(d, exist_ok=True)
    so = os.path.join(d, key + ".so")
    if not os.path.exists(so):
        cpp = os.path.join(d, key + ".cpp")
        with open(cpp, "w") as fh:
            fh.write(_SHIM + code)
        tmp = so + ".%d.tmp" % os.getpid()
        r = subprocess.run([CXX, "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", cpp,
                            "-o", tmp], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("compiling the emulated kernel failed:\n" + r.stderr[-4000:])
        os.replace(tmp, so)
    lib = ctypes.CDLL(so)
    _LIBS[key] = lib
    return lib


def kernel(source, name):
    """Compile CUDA ``source`` for the host and return kernel ``name`` as a RawKernel-like callable."""
    src = re.sub(r"#include\s*<cooperative_groups\.h>", "", source)
    src = _shared_to_arena(src)
    sig = {m.group(1): _params(m.group(2)) for m in _KERNEL.finditer(source)}
    if name not in sig:
        raise ValueError("kernel %r not found in the source" % name)
    params = sig[name]
    decl = ", ".join("%s %s" % p for p in params)
    names = ", ".join(n for _, n in params)
    launcher = ('extern "C" void emu_launch_%s(unsigned grid, unsigned block, %s) {\n'
                '    emu_launch(grid, block, [=] { %s(%s); });\n}\n' % (name, decl, name, names))
    lib = _build(src + "\n" + launcher)
    fn = getattr(lib, "emu_launch_" + name)
    fn.argtypes = [ctypes.c_uint, ctypes.c_uint] + [_ctype(t) for t, _ in params]
    fn.restype = None

    def call(grid, block, args):
        if len(args) != len(params):
            raise TypeError("%s takes %d arguments, got %d" % (name, len(params), len(args)))
        conv = [a.ctypes.data if isinstance(a, np.ndarray) else int(a) for a in args]
        fn(int(grid[0]), int(block[0]), *conv)
    return call


class FakeCublas:
    """cuBLAS's column-major ``dgemm``/``sgemm`` (BLAS semantics) on raw host pointers."""

    CUBLAS_OP_N, CUBLAS_OP_T = 0, 1

    @staticmethod
    def _view(ptr, rows, cols, ld, dtype):
        n = ld * (cols - 1) + rows
        buf = (ctypes.c_char * (n * np.dtype(dtype).itemsize)).from_address(ptr)
        a = np.frombuffer(buf, dtype=dtype)
        return np.lib.stride_tricks.as_strided(a, shape=(rows, cols),
                                               strides=(a.itemsize, a.itemsize * ld))

    def _gemm(self, dtype, handle, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        opA = self._view(A, *((m, k) if ta == 0 else (k, m)), lda, dtype)
        opB = self._view(B, *((k, n) if tb == 0 else (n, k)), ldb, dtype)
        opA, opB = (opA if ta == 0 else opA.T), (opB if tb == 0 else opB.T)
        Cm = self._view(C, m, n, ldc, dtype)
        prod = (opA @ opB).astype(dtype)
        Cm[...] = alpha * prod + beta * Cm if beta else alpha * prod

    def dgemm(self, *args):
        self._gemm(np.float64, *args)

    def sgemm(self, *args):
        self._gemm(np.float32, *args)
