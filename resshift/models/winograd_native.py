"""Winograd F(4x4, 3x3) tile transforms as one compiled pass each, for the fast CPU path.

:func:`resshift.models.winograd.winograd_conv3x3` spends most of its non-GEMM time moving the 36
transformed planes through memory: gathering the overlapping 6x6 tiles into a copy, the input
transform as a dense 36 x 36 matrix product, the output transform as a dense 16 x 36 product, then a
permuted copy with the bias into the output map. Here each transform is one pass over the data, in
C, written out from the exact matrices of :func:`resshift.models.winograd.toom_cook_matrices` (so
the coefficients have one home): the input pass reads the zero-padded map once and writes the planes
``V = Bᵀ d B`` (``(36, C_in, tiles)``, the layout ``torch.bmm`` takes); the output pass reads the
products ``M`` and writes ``Aᵀ M A + bias`` straight into the output map (or into the interleaved
sub-pixel phases of an upsampling layer). Both are separable (rows, then columns: 6·6·(6+6) terms per
tile and channel, fewer after zero coefficients drop out, instead of 36·36), vectorised over the tiles
of a row by the compiler. The channel products in between stay PyTorch's ``bmm``.

For maps of at least :data:`FUSED_MIN_TILES` tiles, :func:`conv` fuses the three steps per block of
:func:`fused_block` tiles: the input pass reads rows of the unpadded map (the zero border is made in a
6-row strip), the channel products are MKL's ``sgemm_`` on one thread (the BLAS PyTorch's own products use,
reached through the symbols ``libtorch_cpu`` exports), the output pass writes the block's outputs; each
thread takes a run of blocks. The block's planes and products (2.4 MiB at 128 channels, 19 MiB at 512: in
the core's L2 or the shared L3) stay in cache, where the band
loop writes and reads them through memory, and the map is never copied into a zero-padded buffer: at
128 channels 256x256 the convolution took about half the band loop's time (``reports/resshift-speed.md``).

The library is compiled on first use with the system C compiler (``$CC``, else ``cc``/``gcc``;
``-O3 -march=native -ffp-contract=off -fopenmp``) into the suite's cache, keyed by the source, the
compiler's version and the CPU's feature flags, and loaded with :mod:`ctypes` (the calls release the
GIL). Its passes run on ``torch.get_num_threads()`` OpenMP threads: with GCC the library links
``libgomp.so.1``, which resolves to the copy PyTorch has already loaded, so they are PyTorch's own
intra-op threads, still hot from the operation before (a separate pool of Python threads competed with
them for the cores: 9.1 against 5.0 ms for a 160-channel 64x64 layer after a group norm). In a forked
child they run on one thread (:func:`threads`). Where no compiler is found or the build fails,
:func:`available` is False with the reason in :func:`status`, and the convolution uses its PyTorch
transforms: the same algebra, other float32 round-off (both are checked against float64 in the tests).
Which one ran is part of :func:`resshift.models.winograd.describe`, hence of a run's identity.
``RESSHIFT_WINOGRAD_TRANSFORMS=torch`` forces the PyTorch transforms.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from fractions import Fraction
from functools import cache
from pathlib import Path

import torch

from resshift.paths import cache_dir

ENV = "RESSHIFT_WINOGRAD_TRANSFORMS"
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp", "-fPIC", "-shared",
          "-std=c99")
_LOCK = threading.Lock()
_FORKED = False  # set in a forked child: the compiled passes run on one thread there


def _term(coef: Fraction, expr: str) -> str:
    """``coef * expr`` as C, with the float literal exact (the coefficients of Aᵀ and Bᵀ are dyadic)."""
    value = float(coef)
    if Fraction(value) != coef:
        raise ArithmeticError(f"coefficient {coef} is not exact in float32")
    if value == 1:
        return f"+{expr}"
    if value == -1:
        return f"-{expr}"
    return f"{'-' if value < 0 else '+'}{abs(value)!r}f*{expr}"


def _dot(row: list[Fraction], names: list[str]) -> str:
    terms = [_term(c, n) for c, n in zip(row, names, strict=True) if c != 0]
    return " ".join(terms) if terms else "0.0f"


def c_source(a_t: list[list[Fraction]], b_t: list[list[Fraction]]) -> str:
    """The C source of both transforms for the given exact ``Aᵀ`` (4 x 6) and ``Bᵀ`` (6 x 6)."""
    n, m = len(b_t), len(a_t)
    if (n, m) != (6, 4):
        raise ValueError(f"the compiled transforms are written for F(4x4, 3x3), got F({m}, {n - m + 1})")
    ins = ", ".join(f"const float *restrict r{k}" for k in range(n))
    outs = ", ".join(f"float *restrict t{i}" for i in range(n))
    vert_in = "\n".join(f"        t{i}[x] = {_dot(b_t[i], [f'r{k}[x]' for k in range(n)])};" for i in range(n))
    horiz_in = "\n".join(
        f"        o{j}[tx] = {_dot(b_t[j], [f'q[4 * tx + {k}]' for k in range(n)])};" for j in range(n))
    vert_out = "\n".join(f"        s{p}[tx] = {_dot(a_t[p], [f'r{i}[tx]' for i in range(n)])};" for p in range(m))
    s_in = ", ".join(f"const float *restrict s{j}" for j in range(n))
    horiz_out = "\n".join(
        f"        row[(4 * tx + {q}) * CS] = bias {_dot(a_t[q], [f's{j}[tx]' for j in range(n)])};" for q in range(m))
    macro_lines = " \\\n".join(horiz_out.splitlines())
    o_args = ", ".join(f"float *restrict o{j}" for j in range(n))
    return f"""/* Winograd F(4x4, 3x3) transforms (generated by resshift.models.winograd_native). */
#include <stdlib.h>
#include <omp.h>
#define NOINLINE __attribute__((noinline))

/* fn(ctx, i0, i1, thread) over 0..count, split evenly over up to `nthreads` OpenMP threads (the OpenMP
   runtime PyTorch runs its own operations on; one thread: no parallel region). Returns the OR of the codes. */
typedef int (*range_fn)(const void *ctx, long i0, long i1, int thread);
static int parallel_ranges(const void *ctx, range_fn fn, long count, int nthreads) {{
    if (nthreads > count) nthreads = (int)count;
    if (nthreads <= 1) return count > 0 ? fn(ctx, 0, count, 0) : 0;
    int rc = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|:rc)
    {{
        long i = omp_get_thread_num(), n = omp_get_num_threads();
        rc |= fn(ctx, count * i / n, count * (i + 1) / n, (int)i);
    }}
    return rc;
}}

/* t_i = sum_k B^T[i][k] r_k over a row of `width` values (the vertical half of B^T d B) */
static NOINLINE void rows_in({ins}, {outs}, long width) {{
    for (long x = 0; x < width; x++) {{
{vert_in}
    }}
}}

/* o_j[tx] = sum_k B^T[j][k] q[4 tx + k] (the horizontal half, one output plane per j) */
static NOINLINE void tiles_in(const float *restrict q, {o_args}, long tw) {{
    for (long tx = 0; tx < tw; tx++) {{
{horiz_in}
    }}
}}

/* s_p[tx] = sum_i A^T[p][i] r_i[tx] (the vertical half of A^T M A, for one column j) */
static NOINLINE void rows_out({ins}, {", ".join(f"float *restrict s{p}" for p in range(m))}, long tw) {{
    for (long tx = 0; tx < tw; tx++) {{
{vert_out}
    }}
}}

/* row[(4 tx + q) * CS] = bias + sum_j A^T[q][j] s_j[tx] (the horizontal half, into the output row) */
#define ROW_OUT(NAME, CS) static NOINLINE void NAME({s_in}, float *restrict row, float bias, long tw) {{ \\
    for (long tx = 0; tx < tw; tx++) {{ \\
{macro_lines} \\
    }} \\
}}
ROW_OUT(row_out_1, 1)
ROW_OUT(row_out_2, 2)

/* V[(6i+j), c, t] = (B^T d B)[i][j] of the 6x6 tile t = (ty - ty0) * tw + tx of channel c, for channels
   c0..c1 of xp (C, Hp, Wp; zero-padded, Wp >= 4 tw + 2, Hp >= 4 ty1 + 2). Returns 0, or 1 when out of memory. */
static int input_range(const float *xp, long C, long Hp, long Wp, long ty0, long ty1, long tw,
                       long c0, long c1, float *V) {{
    long T = (ty1 - ty0) * tw, width = 4 * tw + 2;
    float *t = (float *)malloc(sizeof(float) * 6 * (size_t)width);
    if (!t) return 1;
    for (long c = c0; c < c1; c++) {{
        const float *xc = xp + c * Hp * Wp;
        for (long ty = ty0; ty < ty1; ty++) {{
            const float *r = xc + 4 * ty * Wp;
            rows_in(r, r + Wp, r + 2 * Wp, r + 3 * Wp, r + 4 * Wp, r + 5 * Wp,
                    t, t + width, t + 2 * width, t + 3 * width, t + 4 * width, t + 5 * width, width);
            for (long i = 0; i < 6; i++) {{
                float *o = V + ((6 * i) * C + c) * T + (ty - ty0) * tw;
                long P = C * T;
                tiles_in(t + i * width, o, o + P, o + 2 * P, o + 3 * P, o + 4 * P, o + 5 * P, tw);
            }}
        }}
    }}
    free(t);
    return 0;
}}

/* out = A^T M A (+ bias) for channels c0..c1 of M (36, C, T), tiles of rows ty0..ty1. Output pixel (y, x)
   of channel c is out[base(c) + y * rs + x * cs] (cs = 1 or 2); base(c) = c * plane, or with phases = 1
   (four blocks of C / 4 channels, block p = 2a + b) (c mod C/4) * plane + a * rs / 2 + b.
   Returns 0, 1 when out of memory, 2 for another cs. */
static int output_range(const float *M, long C, long T, long ty0, long ty1, long tw, long c0, long c1,
                        const float *bias, float *out, long plane, long rs, long cs, int phases) {{
    if (cs != 1 && cs != 2) return 2;
    float *s = (float *)malloc(sizeof(float) * 24 * (size_t)tw);
    if (!s) return 1;
    long cmap = phases ? C / 4 : C, P = C * T;
    for (long c = c0; c < c1; c++) {{
        float b = bias ? bias[c] : 0.0f;
        long base = (c % cmap) * plane;
        if (phases) {{ long p = c / cmap; base += (p / 2) * (rs / 2) + (p % 2); }}
        for (long ty = ty0; ty < ty1; ty++) {{
            for (long j = 0; j < 6; j++) {{
                const float *r = M + (j * C + c) * T + (ty - ty0) * tw;  /* plane 6i + j at r + 6 i P */
                rows_out(r, r + 6 * P, r + 12 * P, r + 18 * P, r + 24 * P, r + 30 * P,
                         s + j * tw, s + (6 + j) * tw, s + (12 + j) * tw, s + (18 + j) * tw, tw);
            }}
            for (long p = 0; p < 4; p++) {{
                const float *sp = s + 6 * p * tw;
                float *row = out + base + (4 * ty + p) * rs;
                if (cs == 1)
                    row_out_1(sp, sp + tw, sp + 2 * tw, sp + 3 * tw, sp + 4 * tw, sp + 5 * tw, row, b, tw);
                else
                    row_out_2(sp, sp + tw, sp + 2 * tw, sp + 3 * tw, sp + 4 * tw, sp + 5 * tw, row, b, tw);
            }}
        }}
    }}
    free(s);
    return 0;
}}

struct input_args {{ const float *xp; long C, Hp, Wp, ty0, ty1, tw; float *V; }};
static int input_task(const void *ctx, long c0, long c1, int thread) {{
    const struct input_args *a = ctx;
    (void)thread;
    return input_range(a->xp, a->C, a->Hp, a->Wp, a->ty0, a->ty1, a->tw, c0, c1, a->V);
}}

/* input_range over all C channels, on up to nthreads threads */
int wino_input(const float *xp, long C, long Hp, long Wp, long ty0, long ty1, long tw, float *V, int nthreads) {{
    struct input_args a = {{xp, C, Hp, Wp, ty0, ty1, tw, V}};
    return parallel_ranges(&a, input_task, C, nthreads);
}}

struct output_args {{ const float *M; long C, T, ty0, ty1, tw; const float *bias; float *out; long plane, rs, cs;
                      int phases; }};
static int output_task(const void *ctx, long c0, long c1, int thread) {{
    const struct output_args *a = ctx;
    (void)thread;
    return output_range(a->M, a->C, a->T, a->ty0, a->ty1, a->tw, c0, c1, a->bias, a->out, a->plane, a->rs, a->cs,
                        a->phases);
}}

/* output_range over all C channels, on up to nthreads threads */
int wino_output(const float *M, long C, long T, long ty0, long ty1, long tw, const float *bias, float *out,
                long plane, long rs, long cs, int phases, int nthreads) {{
    struct output_args a = {{M, C, T, ty0, ty1, tw, bias, out, plane, rs, cs, phases}};
    return parallel_ranges(&a, output_task, C, nthreads);
}}

typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *, const float *,
                         const float *, const int *, const float *, const int *, const float *, float *, const int *);
typedef int (*threads_fn)(int);

/* The whole convolution of one image for the tiles t0..t1 (row-major over the th x tw tile grid), in blocks of
   T tiles: per block, the input pass over rows of x (C, H, W; unpadded: the zero border is made here, in a
   strip of 6 rows), the 36 channel products M_p (K, n) = U_p (K, C) @ V_p (C, n) by the BLAS `gemm` (column-
   major sgemm_, one thread: set_threads(1) while it runs), and the output pass into out (as wino_output).
   work: 12 (4 T + 2) + 36 (C + K) T + 24 T floats, private to the caller. Returns 0, or 2 for another cs. */
static int conv_range(const float *x, long C, long H, long W, const float *U, long K, const float *bias,
                      float *out, long plane, long rs, long cs, int phases, long th, long tw, long t0, long t1,
                      long T, float *work, sgemm_fn gemm, threads_fn set_threads) {{
    if (cs != 1 && cs != 2) return 2;
    long wmax = 4 * T + 2, cmap = phases ? K / 4 : K;
    float *strip = work, *t = strip + 6 * wmax, *V = t + 6 * wmax, *M = V + 36 * C * T, *s = M + 36 * K * T;
    int previous = set_threads ? set_threads(1) : 0;
    if (t1 > th * tw) t1 = th * tw;
    for (long b0 = t0; b0 < t1; b0 += T) {{
        long b1 = b0 + T < t1 ? b0 + T : t1, n = b1 - b0;
        for (long c = 0; c < C; c++) {{
            const float *xc = x + c * H * W;
            for (long e0 = b0; e0 < b1;) {{  /* the block's tiles of one tile row: tx0..tx0 + k of row ty */
                long ty = e0 / tw, tx0 = e0 % tw, k = (b1 - e0 < tw - tx0) ? b1 - e0 : tw - tx0;
                long width = 4 * k + 2, x0 = 4 * tx0 - 1;
                for (long r = 0; r < 6; r++) {{
                    long y = 4 * ty - 1 + r;
                    float *row = strip + r * width;
                    if (y < 0 || y >= H) {{ for (long i = 0; i < width; i++) row[i] = 0.0f; continue; }}
                    const float *xr = xc + y * W;
                    long lo = x0 < 0 ? -x0 : 0, hi = x0 + width > W ? W - x0 : width;
                    for (long i = 0; i < lo; i++) row[i] = 0.0f;
                    for (long i = lo; i < hi; i++) row[i] = xr[x0 + i];
                    for (long i = hi > lo ? hi : lo; i < width; i++) row[i] = 0.0f;
                }}
                rows_in(strip, strip + width, strip + 2 * width, strip + 3 * width, strip + 4 * width,
                        strip + 5 * width, t, t + width, t + 2 * width, t + 3 * width, t + 4 * width, t + 5 * width,
                        width);
                long P = C * n;
                for (long i = 0; i < 6; i++) {{
                    float *o = V + (6 * i * C + c) * n + (e0 - b0);
                    tiles_in(t + i * width, o, o + P, o + 2 * P, o + 3 * P, o + 4 * P, o + 5 * P, k);
                }}
                e0 += k;
            }}
        }}
        int gm = (int)n, gn = (int)K, gk = (int)C;
        float one = 1.0f, zero = 0.0f;
        for (long p = 0; p < 36; p++)  /* column-major: M_p^T (n, K) = V_p^T (n, C) U_p^T (C, K) */
            gemm("N", "N", &gm, &gn, &gk, &one, V + p * C * n, &gm, U + p * K * C, &gk, &zero, M + p * K * n, &gm);
        long P = K * n;
        for (long c = 0; c < K; c++) {{
            float bc = bias ? bias[c] : 0.0f;
            long base = (c % cmap) * plane;
            if (phases) {{ long q = c / cmap; base += (q / 2) * (rs / 2) + (q % 2); }}
            for (long e0 = b0; e0 < b1;) {{
                long ty = e0 / tw, tx0 = e0 % tw, k = (b1 - e0 < tw - tx0) ? b1 - e0 : tw - tx0;
                for (long j = 0; j < 6; j++) {{
                    const float *r = M + (j * K + c) * n + (e0 - b0);
                    rows_out(r, r + 6 * P, r + 12 * P, r + 18 * P, r + 24 * P, r + 30 * P,
                             s + j * k, s + (6 + j) * k, s + (12 + j) * k, s + (18 + j) * k, k);
                }}
                for (long q = 0; q < 4; q++) {{
                    const float *sq = s + 6 * q * k;
                    float *row = out + base + (4 * ty + q) * rs + 4 * tx0 * cs;
                    if (cs == 1)
                        row_out_1(sq, sq + k, sq + 2 * k, sq + 3 * k, sq + 4 * k, sq + 5 * k, row, bc, k);
                    else
                        row_out_2(sq, sq + k, sq + 2 * k, sq + 3 * k, sq + 4 * k, sq + 5 * k, row, bc, k);
                }}
                e0 += k;
            }}
        }}
    }}
    if (set_threads) set_threads(previous);
    return 0;
}}

struct conv_args {{ const float *x; long C, H, W; const float *U; long K; const float *bias; float *out;
                    long plane, rs, cs; int phases; long th, tw, T; float *work; long work_each; sgemm_fn gemm;
                    threads_fn set_threads; }};
static int conv_task(const void *ctx, long b0, long b1, int thread) {{
    const struct conv_args *a = ctx;
    return conv_range(a->x, a->C, a->H, a->W, a->U, a->K, a->bias, a->out, a->plane, a->rs, a->cs, a->phases,
                      a->th, a->tw, b0 * a->T, b1 * a->T, a->T, a->work + thread * a->work_each, a->gemm,
                      a->set_threads);
}}

/* conv_range over all tiles, thread i taking a run of whole blocks and work + i * work_each as its buffer
   (nthreads buffers of work_each floats) */
int wino_conv(const float *x, long C, long H, long W, const float *U, long K, const float *bias, float *out,
              long plane, long rs, long cs, int phases, long th, long tw, long T, float *work, long work_each,
              sgemm_fn gemm, threads_fn set_threads, int nthreads) {{
    struct conv_args a = {{x, C, H, W, U, K, bias, out, plane, rs, cs, phases, th, tw, T, work, work_each, gemm,
                          set_threads}};
    return parallel_ranges(&a, conv_task, (th * tw + T - 1) / T, nthreads);
}}
"""


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> str:
    """The CPU's feature flags (``-march=native`` code runs only where they are all present)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


@cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """(the loaded library, how it was obtained) or (None, why not)."""
    if os.environ.get(ENV, "").lower() == "torch":
        return None, f"{ENV}=torch"
    if platform.system() != "Linux" and platform.system() != "Darwin":
        return None, f"not built on {platform.system()}"
    from resshift.models.winograd import toom_cook_matrices

    a_t, _, b_t = toom_cook_matrices()
    source = c_source(a_t, b_t)
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found ($CC, cc, gcc, clang)"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as err:
        return None, f"{cc} --version failed: {err}"
    key = hashlib.sha256("\n".join([source, version, " ".join(CFLAGS), _cpu_flags()]).encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"winograd_f43_{key}.so"
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src = Path(tmp) / "winograd_f43.c"
                src.write_text(source)
                built = Path(tmp) / target.name
                proc = subprocess.run([cc, *CFLAGS, str(src), "-o", str(built)], capture_output=True, text=True,
                                      timeout=300)
                if proc.returncode != 0:
                    return None, (f"{cc} failed ({proc.returncode}; the compiled passes need a C compiler with "
                                  f"OpenMP, -fopenmp): {proc.stderr.strip()[-400:]}")
                os.replace(built, target)  # atomic: a concurrent build of the same key writes the same file
        except (OSError, subprocess.SubprocessError) as err:  # unwritable cache, compiler not runnable, time-out
            return None, f"cannot build in {target.parent}: {err}"
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as err:
        return None, f"cannot load {target}: {err}"
    i64, ptr = ctypes.c_long, ctypes.c_void_p
    i32 = ctypes.c_int
    lib.wino_input.argtypes = [ptr, i64, i64, i64, i64, i64, i64, ptr, i32]
    lib.wino_input.restype = i32
    lib.wino_output.argtypes = [ptr, i64, i64, i64, i64, i64, ptr, ptr, i64, i64, i64, i32, i32]
    lib.wino_output.restype = i32
    lib.wino_conv.argtypes = [ptr, i64, i64, i64, ptr, i64, ptr, ptr, i64, i64, i64, i32, i64, i64, i64, ptr, i64,
                              ptr, ptr, i32]
    lib.wino_conv.restype = i32
    # the compiler's banner stays out of this text (it goes into a run's identity through describe(); the
    # flags fix the arithmetic), but is part of the cache key above
    return lib, f"compiled C ({' '.join(CFLAGS[:3])})"


@cache
def _blas() -> tuple[int | None, int | None, str]:
    """(address of ``sgemm_``, of ``MKL_Set_Num_Threads_Local`` or None, how) or (None, None, why not).

    The channel products of :func:`conv` are MKL's, the library PyTorch's own CPU matrix products use,
    reached through the symbols PyTorch's x86-64 builds export from ``libtorch_cpu`` (no second BLAS
    is installed or loaded). A build without them (another platform or BLAS) keeps the band loop."""
    handle = _torch_cpu_library()
    if handle is None:
        return None, None, f"no loadable libtorch_cpu in {Path(torch.__file__).parent / 'lib'}"
    name = Path(handle._name).name  # noqa: SLF001 - the path it was loaded from
    try:
        gemm = ctypes.cast(handle.sgemm_, ctypes.c_void_p).value
    except AttributeError as err:
        return None, None, f"no BLAS sgemm_ exported by {name} ({err})"
    try:  # MKL: one thread per call inside our own worker threads (its per-thread setting, restored after)
        threads = ctypes.cast(handle.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value
    except AttributeError:
        return None, None, f"{name} exports sgemm_ but not MKL_Set_Num_Threads_Local (not MKL)"
    return gemm, threads, "MKL sgemm_"


@cache
def _torch_cpu_library() -> ctypes.CDLL | None:
    """PyTorch's ``libtorch_cpu`` (already loaded by ``import torch``), or None."""
    lib_dir = Path(torch.__file__).parent / "lib"
    for path in sorted(lib_dir.glob("libtorch_cpu.*")):
        if path.suffix in (".so", ".dylib"):
            try:
                return ctypes.CDLL(str(path))
            except OSError:
                return None
    return None


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p), ("dli_sname", ctypes.c_char_p),
                ("dli_saddr", ctypes.c_void_p)]


def _defining_file(handle: ctypes.CDLL, symbol: str) -> str | None:
    """The file that defines ``symbol`` as ``handle``'s library resolves it (``dladdr``), or None."""
    try:
        address = ctypes.cast(getattr(handle, symbol), ctypes.c_void_p).value
        info = _DlInfo()
        if not address or not ctypes.CDLL(None).dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
            return None
        return os.path.realpath(info.dli_fname.decode()) if info.dli_fname else None
    except (AttributeError, OSError, ValueError):
        return None


@cache
def _openmp_runtimes() -> tuple[str | None, str | None]:
    """(the OpenMP runtime file the compiled library runs on, the one PyTorch runs on), each None where it
    cannot be told (no ``dladdr``, no library). Other packages may load runtimes of their own; only these
    two matter here."""
    lib = _library()[0]
    torch_lib = _torch_cpu_library()
    ours = _defining_file(lib, "omp_get_thread_num") if lib is not None else None
    theirs = _defining_file(torch_lib, "omp_get_thread_num") if torch_lib is not None else None
    return ours, theirs


def _openmp_note() -> str:
    """``""`` where the compiled passes run on PyTorch's OpenMP runtime (or it cannot be told), else both."""
    ours, theirs = _openmp_runtimes()
    if ours is None or theirs is None or ours == theirs:
        return ""
    return (f"; OpenMP runtime {Path(ours).name} is not PyTorch's ({Path(theirs).name}): the passes run on "
            "threads of their own")


def fused_available() -> bool:
    """Whether :func:`conv` can run here: the compiled transforms and PyTorch's MKL ``sgemm_``."""
    return available() and _blas()[0] is not None


def available() -> bool:
    """Whether the compiled transforms can be used here (built on first call)."""
    with _LOCK:
        return _library()[0] is not None


def status() -> str:
    """How the transforms are computed here: the compiler and flags, or why the PyTorch ones are used;
    and whether large maps run as fused blocks (:func:`conv`) or why not."""
    with _LOCK:
        lib, how = _library()
    if lib is None:
        return f"PyTorch matrix products ({how})"
    gemm, _, blas = _blas()
    if gemm is None:
        return f"{how}{_openmp_note()}; fused blocks off ({blas})"
    return (f"{how}{_openmp_note()}; maps of >= {FUSED_MIN_TILES} tiles as fused blocks of {FUSED_BLOCK} tiles "
            f"({2 * FUSED_BLOCK} from {WIDE_INPUT} input channels; {blas})")


def _after_fork_in_child() -> None:
    """A child forked after the parent ran OpenMP regions cannot start them again (libgomp waits for the
    parent's absent threads; PyTorch's own operations have the same limit): run on one thread there."""
    global _LOCK, _FORKED
    _LOCK = threading.Lock()
    _FORKED = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threads() -> int:
    """Threads the compiled passes use: ``torch.get_num_threads()``, or 1 in a forked child."""
    return 1 if _FORKED else max(1, torch.get_num_threads())


def _bias_pointer(bias: torch.Tensor | None, channels: int, where: str) -> int | None:
    """The address of ``bias`` for the C passes (None for no bias); ``ValueError`` unless it is ``channels``
    contiguous float32 CPU values."""
    if bias is None:
        return None
    if (not bias.is_contiguous() or bias.numel() != channels or bias.dtype != torch.float32
            or bias.device.type != "cpu"):
        raise ValueError(f"{where}: bias of {bias.numel()} values ({bias.dtype}, {bias.device}) for {channels} "
                         f"channels: needs {channels} contiguous float32 CPU values")
    return bias.data_ptr()


def _check(rc: int) -> None:
    """Raise for the OR of the threads' return codes: bit 1 = out of memory for a row buffer, bit 2 = an
    output column stride other than 1 or 2 (the argument checks here make the latter unreachable)."""
    if rc & 1:
        raise MemoryError(f"Winograd transform: out of memory for its row buffer (code {rc})")
    if rc:
        raise RuntimeError(f"Winograd transform: output column stride not 1 or 2 (code {rc})")


def input_transform(padded: torch.Tensor, ty0: int, ty1: int, tiles_w: int, out: torch.Tensor) -> torch.Tensor:
    """``out[6i+j, c, t] = (Bᵀ d B)[i, j]`` of every 6x6 tile (stride 4) of tile rows ``ty0..ty1`` of
    ``padded`` (C, Hp, Wp), a contiguous float32 CPU map with a zero border (Hp >= 4·ty1 + 2,
    Wp >= 4·tiles_w + 2); ``out``: contiguous float32 (36, C, (ty1 - ty0)·tiles_w). Returns ``out``."""
    lib = _library()[0]
    channels, height, width = padded.shape
    if lib is None or not padded.is_contiguous() or not out.is_contiguous():
        raise RuntimeError("compiled Winograd transforms unavailable or non-contiguous tensors")
    if height < 4 * ty1 + 2 or width < 4 * tiles_w + 2 or out.shape != (36, channels, (ty1 - ty0) * tiles_w):
        raise ValueError(f"input transform: map {tuple(padded.shape)}, rows {ty0}..{ty1}, {tiles_w} tiles "
                         f"per row do not fit out {tuple(out.shape)}")
    _check(lib.wino_input(padded.data_ptr(), channels, height, width, ty0, ty1, tiles_w, out.data_ptr(), threads()))
    return out


def output_transform(m: torch.Tensor, ty0: int, ty1: int, tiles_w: int, bias: torch.Tensor | None,
                     out: torch.Tensor, phases: bool = False) -> None:
    """Writes ``Aᵀ M A + bias`` of tile rows ``ty0..ty1`` into ``out``, a contiguous float32 (C, H, W)
    map of whole tiles (H >= 4·ty1, W >= 4·tiles_w), or with ``phases=True`` a (C / 4, 2H, 2W) map
    whose pixel (2y + a, 2x + b) takes block p = 2a + b of the channels; ``m``: contiguous (36, C, T)."""
    lib = _library()[0]
    if lib is None or not m.is_contiguous() or not out.is_contiguous():
        raise RuntimeError("compiled Winograd transforms unavailable or non-contiguous tensors")
    channels, tiles = m.shape[1], m.shape[2]
    scale = 2 if phases else 1
    if (m.shape[0] != 36 or tiles != (ty1 - ty0) * tiles_w or out.shape[0] * (4 if phases else 1) != channels
            or out.shape[1] < scale * 4 * ty1 or out.shape[2] < scale * 4 * tiles_w):
        raise ValueError(f"output transform: products {tuple(m.shape)}, rows {ty0}..{ty1}, {tiles_w} tiles "
                         f"per row do not fit out {tuple(out.shape)} (phases={phases})")
    b = _bias_pointer(bias, channels, "output transform")
    plane = out.shape[1] * out.shape[2]
    row_stride = scale * out.shape[2]
    _check(lib.wino_output(m.data_ptr(), channels, tiles, ty0, ty1, tiles_w, b, out.data_ptr(), plane, row_stride,
                           scale, int(phases), threads()))


FUSED_BLOCK = 64  # tiles per block of :func:`conv` (twice that from WIDE_INPUT input channels)
# Measured per shape of the v3 chain (2 threads, AMD EPYC Zen 4), blocks of 128 tiles against 64: 0.90-0.94x
# the time with 256 to 512 input channels, 1.08-1.10x with 128 (``reports/resshift-speed.md``).
WIDE_INPUT = 256
# Maps with fewer tiles keep the band loop: 64x64 maps (256 tiles) were as fast either way, at 32x32 (64 tiles,
# one block) the fused form took 1.5x the band loop's time (2 threads, ``benchmarks/cpu_speed.py``).
FUSED_MIN_TILES = 4 * FUSED_BLOCK
_WORK = threading.local()


def fused_block(c_in: int) -> int:
    """Tiles per block of :func:`conv` for ``c_in`` input channels (a function of the shape only)."""
    return 2 * FUSED_BLOCK if c_in >= WIDE_INPUT else FUSED_BLOCK


def fused_applies(tiles: int) -> bool:
    """Whether a map of ``tiles`` 4x4 output tiles runs as fused blocks here: :func:`fused_available` and at
    least :data:`FUSED_MIN_TILES` tiles. A fact of the shape and the build, never of the thread count (the
    path, hence the bits, must not change with ``--threads``); with more threads than blocks some threads
    idle (measured on 2 threads only)."""
    return tiles >= FUSED_MIN_TILES and fused_available()


def workspace(numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A flat CPU buffer of at least ``numel`` elements, one per calling thread (concurrent calls never share
    it), reused by every Winograd call of that thread: the band loop's planes and products
    (:func:`resshift.models.winograd.winograd_conv3x3`) and :func:`conv`'s per-OpenMP-thread block buffers.
    Grown, never shrunk: a fresh allocation of that size per call costs its page faults every time, as much
    as the transforms. Only one convolution of a thread uses it at a time."""
    buf = getattr(_WORK, "buf", None)
    if buf is None or buf.dtype != dtype or buf.numel() < numel:
        with torch.inference_mode(False):
            buf = torch.empty(numel, dtype=dtype)
        _WORK.buf = buf
    return buf[:numel]


def conv(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor,
         phases: bool = False) -> None:
    """The whole F(4x4, 3x3) convolution of one image, fused per block of :func:`fused_block` tiles.

    x: contiguous float32 (C, H, W), zero-padded by 1 implicitly (no padded copy is made); u: contiguous
    (36, K, C) from :func:`resshift.models.winograd.transform_weight`; writes ``conv2d(x, w, bias,
    padding=1)`` into ``out``, a contiguous (K, 4·⌈H/4⌉, 4·⌈W/4⌉) map, or with ``phases=True`` the
    (K / 4, 8·⌈H/4⌉, 8·⌈W/4⌉) map of :func:`output_transform`. Each thread takes a run of blocks and,
    per block, makes the 36 planes of its tiles (2.4-19 MiB: kept in cache), multiplies them by ``u`` with
    MKL's ``sgemm_`` (one thread each) and writes the outputs: the planes never go to memory as a whole.
    The tiles of a block are the same whatever the batch or thread count, and each output pixel's
    products come from one block, so the result does not depend on either. Raises ``RuntimeError``
    where :func:`fused_available` is False, ``ValueError`` for shapes that do not fit.
    """
    lib = _library()[0]
    gemm, mkl_threads, _ = _blas()
    if lib is None or gemm is None:
        raise RuntimeError("fused Winograd convolution unavailable here: " + status())
    for name, t in (("input", x), ("weights", u), ("output", out)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"fused Winograd convolution: {name} must be a contiguous float32 CPU tensor")
    if x.dim() != 3 or u.dim() != 3 or out.dim() != 3 or min(x.shape) < 1 or min(u.shape) < 1:
        raise ValueError(f"fused Winograd convolution: input {tuple(x.shape)} (C, H, W), weights {tuple(u.shape)} "
                         f"(36, K, C) and output {tuple(out.shape)} must be non-empty 3-D tensors")
    channels, height, width = x.shape
    tiles_h, tiles_w = -(-height // 4), -(-width // 4)
    k = u.shape[1]
    scale = 2 if phases else 1
    if (u.shape[0] != 36 or u.shape[2] != channels or (phases and k % 4)
            or tuple(out.shape) != (k // 4 if phases else k, scale * 4 * tiles_h, scale * 4 * tiles_w)):
        raise ValueError(f"fused Winograd convolution: input {tuple(x.shape)}, weights {tuple(u.shape)} and "
                         f"output {tuple(out.shape)} do not fit (phases={phases})")
    b = _bias_pointer(bias, k, "fused Winograd convolution")
    block = fused_block(channels)
    each = 12 * (4 * block + 2) + 36 * (channels + k) * block + 24 * block
    n_threads = threads()
    work = workspace(n_threads * each)
    _check(lib.wino_conv(x.data_ptr(), channels, height, width, u.data_ptr(), k, b, out.data_ptr(),
                         out.shape[1] * out.shape[2], scale * out.shape[2], scale, int(phases), tiles_h, tiles_w,
                         block, work.data_ptr(), each, gemm, mkl_threads, n_threads))
