"""Winograd minimal-filtering convolution F(4x4, 3x3) for the fast CPU path.

A 3x3, stride-1, zero-padded convolution computes each 4x4 output tile from a 6x6 input tile.
Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016, eq. 8) writes that as ``Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A``: 36 multiplications per
tile and channel pair instead of 144, the channel sum becoming 36 independent matrix products
(``(C_out, C_in) @ (C_in, tiles)``). The algebra is exact; only float32 round-off changes.

The transform matrices are the Toom-Cook construction (Lavin & Gray, sec. 4.1) on the interpolation
points ``(0, 1, -1, 1/2, -2, ∞)``, which Barabasz et al. ("Error Analysis and Improving the Accuracy of
Winograd Convolution for Deep Neural Networks", ACM TOMS 2020, table 3) found the most accurate for
F(4, 3): with them the round-off measured against a float64 convolution (2.1e-6 to 4.0e-6 of the
output's scale at the v3 chain's selected shapes) is of the same size as oneDNN's direct float32 kernel
(1.7e-6 to 5.5e-6 on the same shapes; ``benchmarks/cpu_speed.py`` prints both per shape). The
matrices are built here in exact rational arithmetic and checked to satisfy the minimal-filtering
identity exactly; ``Aᵀ`` and ``Bᵀ`` (integers and powers of two) are exact in float32, and ``G``
(thirds, fifteenths, ...) is applied to the kernels in float64, the result rounded once to float32.

Only layers where it is faster on CPU take this path: :func:`winograd_eligible` decides from the layer's shape
and the CPU family PyTorch dispatches to (AVX2 or AVX-512; never from a timing), so a given network computes
the same way on every machine of a family. Maps of at least
:data:`~resshift.models.winograd_native.FUSED_MIN_TILES` tiles run as fused blocks (per block of tiles: the
input transform, the 36 channel products by MKL's ``sgemm_``, the output transform, with the planes kept in
cache; :func:`resshift.models.winograd_native.conv`); smaller maps run in bands of tile rows, the tile
transforms as one compiled pass each around ``torch.bmm``, where a C compiler is available
(:mod:`resshift.models.winograd_native`), else as PyTorch matrix products; :func:`describe` records the rule,
the transforms and the blocks in a run's identity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from fractions import Fraction
from functools import cache

import torch

from resshift.models import winograd_native

OUT_TILE = 4  # m: output tile side
KERNEL = 3  # r: kernel side
IN_TILE = OUT_TILE + KERNEL - 1  # n = m + r - 1: input tile side
POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-2))  # finite points; the last is ∞

# Shape rule, from timing the 3x3 convolution shapes of the v3 chain both ways, interleaved (2 threads;
# ``benchmarks/cpu_speed.py``, tables in reports/resshift-speed.md). It depends on the layer's shape and
# on one fact of the CPU that the code reads, never on a timing: whether PyTorch dispatches AVX-512
# kernels (``torch.backends.cpu.get_cpu_capability()``). On both CPU families F(4, 3) loses with few
# channels (the transforms then cost more than they save) and at 8x8 (too few tiles per product).
# AVX2 (AMD EPYC): 1.1-2.2x faster from 16x16 to 256x256 with >= 128 channels in and out; the upsampling
# layers (four phase kernels on the small map, ``phases=True``) gain from 32x32 and lose at 16x16.
# AVX-512 (AMD EPYC Zen 4; compiled transforms): plain layers 1.01-2.26x from 16x16 up, upsampling
# layers 1.22x at 64x64 and 128x128 but 0.93x at 32x32 (oneDNN's direct kernel is faster there), so
# they need 64x64.
MIN_CHANNELS = 128
# With the fused blocks (:func:`resshift.models.winograd_native.conv`), layers with few channels gain too on
# large maps: 3 -> 128 and 128 -> 3 at 256x256 took 0.52x and 0.41x the direct kernel's time, while at 64x64
# the 3-, 6- and 160 -> 3-channel layers lost (0.44-0.87x; AVX-512 Zen 4, reports/resshift-speed.md).
FEW_CHANNELS_MIN_PIXELS = 256 * 256
RULES: dict[str, tuple[int, int]] = {  # CPU capability -> (min pixels per map, min pixels before a 2x upsampling)
    "AVX2": (16 * 16, 32 * 32),
    "AVX512": (16 * 16, 64 * 64),
}
BAND_BYTES = 16 * 2**20  # transformed tiles per band (see :func:`band_rows`), PyTorch transforms
# With the compiled transforms the planes and products live in one reused workspace (no page faults per
# call), and larger bands win: fewer passes over the transformed weights, longer matrix products.
NATIVE_BAND_BYTES = 64 * 2**20

POLICIES = ("shape", "always", "never")
_POLICY: ContextVar[str] = ContextVar("resshift_winograd_policy", default="shape")


@contextlib.contextmanager
def winograd_policy(policy: str) -> Iterator[None]:
    """Which eligible convolutions take the Winograd path inside this block (context-local).

    ``"shape"`` (the default): those the shape rule selects; ``"always"``: every 3x3 stride-1 padding-1
    float32 CPU convolution, whatever its size (the golden tests run the small networks this way so
    that the path is checked against the official recordings); ``"never"``: none (the benchmark's
    comparison). Raises ``ValueError`` for another name.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown Winograd policy {policy!r}; known: {', '.join(POLICIES)}")
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def _poly_mul(a: list[Fraction], b: list[Fraction]) -> list[Fraction]:
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def toom_cook_matrices(
    m: int = OUT_TILE, r: int = KERNEL, points: tuple[Fraction, ...] = POINTS
) -> tuple[list[list[Fraction]], list[list[Fraction]], list[list[Fraction]]]:
    """Exact ``Aᵀ`` (m x n), ``G`` (n x r), ``Bᵀ`` (n x n) of F(m, r) for correlation (as ``conv2d``).

    With finite points p_j (j < n - 1) and the point at infinity: ``Aᵀ[i][j] = p_jⁱ`` (infinity column
    e_{m-1}); ``G[j][k] = p_jᵏ / Π_{l≠j}(p_j - p_l)`` (infinity row e_{r-1}); row j of ``Bᵀ`` holds the
    coefficients (increasing powers) of Π_{l≠j}(x - p_l), its last row those of Π_l (x - p_l).
    Raises ``ValueError`` unless there are m + r - 2 distinct points, and ``ArithmeticError`` if the
    result does not satisfy ``Σ_j Aᵀ[i][j] G[j][k] Bᵀ[j][t] = [t = i + k]`` exactly.
    """
    n = m + r - 1
    pts = [Fraction(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {n - 1} distinct finite points, got {points}")
    a_t = [[p**i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g: list[list[Fraction]] = []
    b_t: list[list[Fraction]] = []
    for p in pts:
        scale, poly = Fraction(1), [Fraction(1)]
        for q in pts:
            if q != p:
                scale *= p - q
                poly = _poly_mul(poly, [-q, Fraction(1)])
        g.append([p**k / scale for k in range(r)])
        b_t.append(poly + [Fraction(0)] * (n - len(poly)))
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    full = [Fraction(1)]
    for q in pts:
        full = _poly_mul(full, [-q, Fraction(1)])
    b_t.append(full)
    for i in range(m):
        for k in range(r):
            for t in range(n):
                if sum(a_t[i][j] * g[j][k] * b_t[j][t] for j in range(n)) != int(t == i + k):
                    raise ArithmeticError(f"F({m}, {r}) on {points}: transform identity fails at {(i, k, t)}")
    return a_t, g, b_t


@cache
def _float64_matrices() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a_t, g, b_t = toom_cook_matrices()
    with torch.inference_mode(False):  # cached: must also serve calls that record autograd
        as_t = lambda rows: torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)  # noqa: E731
        return as_t(a_t), as_t(g), as_t(b_t)


@cache
def _tile_transforms(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``Bᵀ ⊗ Bᵀ`` (36 x 36) and ``Aᵀ ⊗ Aᵀ`` (16 x 36): the 2-D tile transforms on flattened tiles."""
    a_t, _, b_t = _float64_matrices()
    with torch.inference_mode(False):
        return torch.kron(b_t, b_t).to(device, dtype), torch.kron(a_t, a_t).to(device, dtype)


def cpu_capability() -> str:
    """The CPU kernel family PyTorch dispatches to (``"AVX512"``, ``"AVX2"``, ...); families without a
    measured rule use the AVX2 one."""
    cap = torch.backends.cpu.get_cpu_capability()
    return cap if cap in RULES else "AVX2"


def min_pixels(upsample: bool = False) -> int:
    """Smallest map (H*W per image) the shape rule gives to Winograd on this CPU."""
    plain, before_upsample = RULES[cpu_capability()]
    return before_upsample if upsample else plain


def describe(device: torch.device | str) -> str:
    """How the fast path computes 3x3 convolutions on ``device`` under the current policy (recorded
    in a method's ``describe()``, hence in a run's identity)."""
    policy = _POLICY.get()
    if torch.device(device).type != "cpu" or policy == "never":
        return "direct"
    few = (f", or any channels from {FEW_CHANNELS_MIN_PIXELS} pixels, not before a 2x upsampling (fused blocks)"
           if winograd_native.fused_available() else "")
    rule = "every 3x3 stride-1 convolution" if policy == "always" else (
        f">= {MIN_CHANNELS} channels in and out, >= {min_pixels()} pixels per map "
        f"(>= {min_pixels(upsample=True)} before a 2x upsampling; {cpu_capability()} rule){few}")
    points = ", ".join(str(p) for p in POINTS)
    return (f"winograd F({OUT_TILE}x{OUT_TILE}, {KERNEL}x{KERNEL}) on points ({points}, inf) where {rule}; "
            f"tile transforms: {winograd_native.status()}")


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """``G g Gᵀ`` of every (out, in) kernel: (C_out, C_in, 3, 3) -> (36, C_out, C_in), computed in float64.

    Raises ``ValueError`` for a kernel that is not 3x3.
    """
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (KERNEL, KERNEL):
        raise ValueError(f"Winograd F(4, 3) needs (C_out, C_in, 3, 3) kernels, got {tuple(weight.shape)}")
    _, g, _ = _float64_matrices()
    g = g.to(weight.device)
    u = torch.einsum("ai,ocij,bj->aboc", g, weight.detach().to(torch.float64), g)
    return u.reshape(IN_TILE * IN_TILE, weight.shape[0], weight.shape[1]).to(weight.dtype).contiguous()


def current_policy() -> str:
    """The Winograd policy in force here (see :func:`winograd_policy`)."""
    return _POLICY.get()


def winograd_eligible(conv: torch.nn.Conv2d, x: torch.Tensor, upsample: bool = False) -> bool:
    """Whether ``conv(x)`` takes the Winograd path: a 3x3, stride-1, padding-1 zero-padded, ungrouped,
    undilated convolution of a float32 CPU tensor outside autocast, and under the default policy both
    channel counts >= :data:`MIN_CHANNELS` and H*W >= :func:`min_pixels` per image (the size
    depends on the CPU family, :data:`RULES`), or >= ``min_pixels(upsample=True)`` for ``upsample=True``
    (``conv`` after a 2x nearest upsampling of ``x``, computed on ``x`` as sub-pixel phases); with fewer
    channels, H*W >= :data:`FEW_CHANNELS_MIN_PIXELS` where the map runs as fused blocks
    (:func:`resshift.models.winograd_native.fused_applies`; not for upsampling). The shape rule above, see
    :func:`winograd_policy`."""
    policy = _POLICY.get()
    if policy == "never":
        return False
    fits = (
        x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
        and not torch.is_autocast_enabled("cpu")  # under CPU autocast the products would run in bf16
        and conv.kernel_size == (KERNEL, KERNEL) and conv.stride == (1, 1) and conv.padding == (1, 1)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
    )
    if not fits or policy == "always":
        return fits
    pixels = x.shape[-2] * x.shape[-1]
    if min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS:
        return pixels >= min_pixels(upsample)
    tiles = -(-x.shape[-2] // OUT_TILE) * -(-x.shape[-1] // OUT_TILE)
    return not upsample and pixels >= FEW_CHANNELS_MIN_PIXELS and winograd_native.fused_applies(tiles)


def band_rows(c_in: int, c_out: int, tiles_h: int, tiles_w: int, band_bytes: int | None = None) -> int:
    """Tile rows per band: the bands are as even as possible and each band's transformed tiles
    (36 x channels x tiles, float32) fit in ``band_bytes`` (default :data:`BAND_BYTES`; at least one
    row). Depends on the layer's shape only."""
    per_row = IN_TILE * IN_TILE * max(c_in, c_out) * tiles_w * 4
    most = max(1, (BAND_BYTES if band_bytes is None else band_bytes) // per_row)
    bands = -(-tiles_h // most)
    return -(-tiles_h // bands)


def _zero_padded(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """x (N, C, H, W) inside a zero border: 1 pixel top/left, up to ``height``/``width`` in all.

    ``F.pad`` gives the same tensor but zero-fills the whole buffer before copying x into it (measured:
    ~10 ms a call at 128 x 256 x 256); here only the border is zeroed."""
    n, c, h, w = x.shape
    out = x.new_empty(n, c, height, width)
    out[:, :, 1 : h + 1, 1 : w + 1] = x
    out[:, :, 0].zero_()
    out[:, :, h + 1 :].zero_()
    out[:, :, 1 : h + 1, 0].zero_()
    out[:, :, 1 : h + 1, w + 1 :].zero_()
    return out


def _native_bands(padded: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, full: torch.Tensor,
                  rows: int, tiles_h: int, tiles_w: int, phases: bool) -> None:
    """The band loop of :func:`winograd_conv3x3` with the compiled one-pass transforms
    (:mod:`resshift.models.winograd_native`): planes and products in two buffers reused by every band."""
    n, c_in = padded.shape[:2]
    c_out = u.shape[1]
    planes = IN_TILE * IN_TILE
    v_size = planes * c_in * rows * tiles_w
    work = winograd_native.workspace(v_size + planes * c_out * rows * tiles_w, padded.dtype)
    v_buf, m_buf = work[:v_size], work[v_size:]
    for i in range(n):
        for r0 in range(0, tiles_h, rows):
            r1 = min(tiles_h, r0 + rows)
            tiles = (r1 - r0) * tiles_w
            v = winograd_native.input_transform(padded[i], r0, r1, tiles_w,
                                                v_buf[: planes * c_in * tiles].view(planes, c_in, tiles))
            prod = torch.bmm(u, v, out=m_buf[: planes * c_out * tiles].view(planes, c_out, tiles))
            winograd_native.output_transform(prod, r0, r1, tiles_w, bias, full[i], phases=phases)


def _matrix_bands(padded: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, full: torch.Tensor,
                  rows: int, tiles_h: int, tiles_w: int, phases: bool) -> None:
    """The band loop of :func:`winograd_conv3x3` with the tile transforms as PyTorch matrix products
    (``Bᵀ ⊗ Bᵀ`` and ``Aᵀ ⊗ Aᵀ`` on flattened tiles); any dtype and device, autograd included."""
    n, c_in = padded.shape[:2]
    c_out = u.shape[1]
    m, t = OUT_TILE, IN_TILE
    b2, a2 = _tile_transforms(padded.device, padded.dtype)
    bias_b = bias
    if phases:
        c_map = c_out // 4
        tiled = full.view(n, c_map, tiles_h, m, 2, tiles_w, m, 2)
        if bias_b is not None:  # block p = 2a + b of the bias -> (C, 1, 1, a, 1, 1, b) like y below
            bias_b = bias_b.view(2, 2, c_map).permute(2, 0, 1).reshape(c_map, 1, 1, 2, 1, 1, 2)
    else:
        tiled = full.view(n, c_out, tiles_h, m, tiles_w, m)
        if bias_b is not None:
            bias_b = bias_b.view(-1, 1, 1, 1, 1)
    for i in range(n):
        for r0 in range(0, tiles_h, rows):
            r1 = min(tiles_h, r0 + rows)
            # 6x6 tiles with stride 4, one row each: (C_in * tiles, 36)
            tiles = padded[i, :, m * r0 : m * r1 + 2].unfold(1, t, m).unfold(2, t, m)  # (C, rows, tw, 6, 6)
            d = tiles.reshape(-1, t * t)
            v = (b2 @ d.t()).view(t * t, c_in, -1)  # Bᵀ d B for every tile, position-major
            prod = torch.bmm(u, v)  # Σ_c U ⊙ V: 36 products (C_out, C_in) @ (C_in, tiles)
            y = prod.view(t * t, -1).t() @ a2.t()  # Aᵀ M A: (C_out * tiles, 16)
            if phases:  # (2, 2, C, rows, tw, 4, 4) -> (C, rows, 4, 2, tw, 4, 2)
                y = y.view(2, 2, c_out // 4, r1 - r0, tiles_w, m, m).permute(2, 3, 5, 0, 4, 6, 1)
            else:  # (C_out, rows, tw, 4, 4) -> (C_out, rows, 4, tw, 4)
                y = y.view(c_out, r1 - r0, tiles_w, m, m).permute(0, 1, 3, 2, 4)
            if bias_b is None:
                tiled[i, :, r0:r1].copy_(y)
            else:
                torch.add(y, bias_b, out=tiled[i, :, r0:r1])


def winograd_conv3x3(
    x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None, phases: bool = False
) -> torch.Tensor:
    """``conv2d(x, w, bias, padding=1)`` for 3x3 kernels by F(4x4, 3x3); ``u = transform_weight(w)``.

    x: (N, C_in, H, W), any H, W >= 1 (the map is zero-padded to whole 4x4 output tiles and cropped);
    u: (36, C_out, C_in); returns a new contiguous (N, C_out, H, W) tensor of x's dtype. With
    ``phases=True`` the output channels are four phase blocks p = 2a + b of C_out / 4 each, written
    interleaved as pixel (2y + a, 2x + b) of one (N, C_out / 4, 2H, 2W) map (the sub-pixel form of
    an upsampling convolution). Raises ``ValueError`` when ``u`` does not fit ``x``.

    Each image is computed on its own, so its output does not depend on the batch it came in. Float32 CPU maps
    outside autograd for which :func:`resshift.models.winograd_native.fused_applies` (enough tiles; the
    compiled transforms and MKL's ``sgemm_`` available) run as fused blocks of tiles
    (:func:`resshift.models.winograd_native.conv`; no zero-padded copy is made). Otherwise in bands of
    :func:`band_rows` tile rows: with the compiled transforms each band is one input pass, ``torch.bmm`` and
    one output pass into the result (:func:`_native_bands`); else tiles are gathered and scattered tile-major
    (6x6 and 4x4 values next to each other in memory), the transposes this needs left to the matrix products.
    """
    n, c_in, height, width = x.shape
    if u.dim() != 3 or u.shape[0] != IN_TILE * IN_TILE or u.shape[2] != c_in:
        raise ValueError(f"transformed weight {tuple(u.shape)} does not fit input {tuple(x.shape)}")
    c_out = u.shape[1]
    if phases and c_out % 4:
        raise ValueError(f"phases=True needs 4 phase blocks of output channels, got {c_out}")
    m = OUT_TILE
    tiles_h, tiles_w = -(-height // m), -(-width // m)
    c_map = c_out // 4 if phases else c_out
    scale = 2 if phases else 1
    full = torch.empty(n, c_map, scale * tiles_h * m, scale * tiles_w * m, dtype=x.dtype, device=x.device)
    # the compiled transforms: float32 CPU maps outside autograd (the PyTorch ones serve every other case)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, u, bias))
    native = (x.dtype == torch.float32 and x.device.type == "cpu" and u.dtype == torch.float32 and not needs_grad
              and winograd_native.available())
    bias_x = None if bias is None else bias.to(x.dtype)
    if native and winograd_native.fused_applies(tiles_h * tiles_w):
        x_c, u_c = x.contiguous(), u.contiguous()
        b_c = None if bias_x is None else bias_x.contiguous()
        for i in range(n):
            winograd_native.conv(x_c[i], u_c, b_c, full[i], phases=phases)
        return _cropped(full, scale * height, scale * width)
    padded = _zero_padded(x, tiles_h * m + 2, tiles_w * m + 2)
    if native:
        rows = band_rows(c_in, c_out, tiles_h, tiles_w, NATIVE_BAND_BYTES)
        _native_bands(padded, u, None if bias_x is None else bias_x.contiguous(), full, rows, tiles_h, tiles_w,
                      phases)
    else:
        _matrix_bands(padded, u, bias_x, full, band_rows(c_in, c_out, tiles_h, tiles_w), tiles_h, tiles_w, phases)
    return _cropped(full, scale * height, scale * width)


def _cropped(full: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``full`` (whole tiles) cut to height x width, contiguous (``full`` itself when nothing is cut)."""
    if full.shape[-2] != height or full.shape[-1] != width:
        return full[:, :, :height, :width].contiguous()
    return full
