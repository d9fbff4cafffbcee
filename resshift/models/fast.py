"""Fast inference kernels for the ResShift networks, with the plain path kept as the reference.

Both paths compute the same function with float32 round-off of the same size; the fast path only
changes *how*:

* residual adds, activations after a convolution, GroupNorm + SiLU and the UNet's scale-shift are
  applied in place on fresh tensors (:class:`Conv2d`, :func:`group_norm_silu`): the same
  arithmetic with fewer full-size allocations;
* attention uses the fused SDPA kernels (the flash kernel on CPU, O(N) memory), with q/k/v made by
  one matrix product;
* what does not depend on the input is built once and reused: Swin position biases and masks, the
  window-order permutations, fused q/k/v weights;
* 3x3 convolutions of the shapes where it is faster on CPU run as Winograd F(4x4, 3x3)
  (:mod:`resshift.models.winograd`): 36 instead of 144 multiplications per 4x4 output tile and channel
  pair, with round-off of the same size as the direct kernel's (measured against float64); like the
  in-place steps, only where no autograd graph is recorded.

``fast_kernels(False)`` switches all of it off, leaving the straightforward implementation that
mirrors the official code operation by operation; the golden tests run both paths and the benchmark
(``benchmarks/cpu_speed.py``) times both.

Two things that look like speed-ups were measured and rejected, because on this CPU they change the
numbers by far more than the reference does: channels-last activations (PyTorch's channels-last
GroupNorm on CPU computes its variance as E[x^2] - E[x]^2 in float32, relative errors of 1e-4 where
the contiguous kernel gives 2e-7), and pre-packed oneDNN weights (a different convolution kernel
with ~10x the round-off of the default one, 3e-6 vs 3e-7 relative to a float64 result). A third,
``torch.compile`` (inductor, CPU) of the VQ decode, was not faster on the development machine and
moved the output by 9.7e-6 of scale, at the edge of the golden tolerance
(``reports/resshift-speed.md``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from resshift.models.winograd import transform_weight, winograd_conv3x3, winograd_eligible

T = TypeVar("T")

_FAST: ContextVar[bool] = ContextVar("resshift_fast_kernels", default=True)

# Values derived from parameters (fused weights), keyed by the owning module so that copies,
# pickles and state_dicts of the networks never see them; rebuilt when a parameter changes.
# One entry per (owner, kind of derived value): (version key, weak references to the tensors, value).
_DERIVED: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple, tuple, object]]] = weakref.WeakKeyDictionary()


def fast_enabled() -> bool:
    """Whether the networks currently use the fast kernels (the default)."""
    return _FAST.get()


@contextlib.contextmanager
def fast_kernels(enabled: bool = True) -> Iterator[None]:
    """Use (or, with ``enabled=False``, avoid) the fast kernels inside this block (context-local)."""
    token = _FAST.set(bool(enabled))
    try:
        yield
    finally:
        _FAST.reset(token)


def inplace_ok() -> bool:
    """Activations may be applied in place: fast path on and no autograd graph being recorded."""
    return fast_enabled() and not torch.is_grad_enabled()


def weight_version_key(*tensors: torch.Tensor) -> tuple:
    """Identity of parameter values: storage address, in-place version, shape, dtype and device."""
    key: list = []
    for t in tensors:
        try:
            version = t._version
        except RuntimeError:  # inference tensors carry no version counter (and cannot change)
            version = -1
        key += [t.data_ptr(), version, tuple(t.shape), t.dtype, t.device]
    return tuple(key)


def cached_derived(owner: nn.Module, tensors: list[torch.Tensor], build: Callable[[], T], kind: str = "") -> T:
    """``build()`` computed once per version of ``tensors`` (e.g. fused weights) and kept for ``owner``,
    one value per ``kind`` (an owner may keep, e.g., its direct and its Winograd kernels side by side).

    A value is rebuilt when a tensor is replaced (another object, even at a reused address), resized,
    moved, or changed in place through autograd-visible operations (``load_state_dict``, ``copy_``
    under ``no_grad``). Not seen: in-place changes through ``.data`` and in-place changes of inference
    tensors (weights created inside ``torch.inference_mode``), which carry no version counter; after
    those, call :func:`clear_derived`. With autograd recording and a tensor that requires grad, the
    value is rebuilt on every call so that gradients reach the parameters.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return build()
    key = weight_version_key(*tensors)
    kinds = _DERIVED.setdefault(owner, {})
    entry = kinds.get(kind)
    if entry is not None and entry[0] == key and all(ref() is t for ref, t in zip(entry[1], tensors, strict=True)):
        return entry[2]  # type: ignore[return-value]
    with torch.no_grad():
        value = build()
    kinds[kind] = (key, tuple(weakref.ref(t) for t in tensors), value)
    return value


def clear_derived(module: nn.Module) -> None:
    """Drop the derived values (fused and transformed weights) cached for ``module`` and its children."""
    for m in module.modules():
        _DERIVED.pop(m, None)


def _activate(y: torch.Tensor, name: str) -> torch.Tensor:
    """GELU (erf form, as ``nn.GELU``) or SiLU of ``y``; in place where that is safe."""
    if name == "gelu":
        return torch.ops.aten.gelu_(y) if inplace_ok() else F.gelu(y)
    if name == "silu":
        return F.silu(y, inplace=inplace_ok())
    raise ValueError(f"unknown activation {name!r}; known: gelu, silu")


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state_dict) that applies what follows it in place.

    ``conv(x, residual=r)`` returns ``r + conv(x)`` and ``conv(x, activation="gelu"|"silu")``
    returns ``act(conv(x))``; on the fast path without autograd both are applied in place on the
    freshly computed convolution output (``y + r == r + y`` exactly), saving a full-size
    allocation and its page faults.
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, residual: torch.Tensor | None = None, activation: str | None = None
    ) -> torch.Tensor:
        if inplace_ok() and winograd_eligible(self, x):
            u = cached_derived(self, [self.weight], lambda: transform_weight(self.weight), "winograd")
            y = winograd_conv3x3(x, u, self.bias)
        else:
            y = super().forward(x)
        if activation is not None:
            y = _activate(y, activation)
        if residual is None:
            return y
        if inplace_ok() and y.shape == residual.shape and y.dtype == residual.dtype:
            return y.add_(residual)
        return residual + y


def group_norm_silu(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``silu(norm(x))``; the activation is applied in place on the fast path without autograd."""
    y = norm(x)
    return F.silu(y, inplace=True) if inplace_ok() and y is not x else F.silu(y)


# For output phase a (row parity) of a 3x3 convolution over a 2x nearest-upsampled map, the kernel
# rows that read low-resolution row i-1+a+r, r = 0, 1: phase 0 reads rows (i-1, i) with kernel rows
# {0} and {1, 2}; phase 1 reads rows (i, i+1) with kernel rows {0, 1} and {2}. Columns alike.
_PHASE_TAPS = (((0,), (1, 2)), ((0, 1), (2,)))


def _phase_weights(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The four 2x2 kernels (phases (0,0), (0,1), (1,0), (1,1)) stacked on the output channels."""
    kernels = []
    for a in range(2):
        for b in range(2):
            rows = [
                torch.stack([sum(weight[:, :, r, c] for r in _PHASE_TAPS[a][i] for c in _PHASE_TAPS[b][j])
                             for j in range(2)], dim=-1)
                for i in range(2)
            ]
            kernels.append(torch.stack(rows, dim=-2))
    return torch.cat(kernels), (bias.repeat(4) if bias is not None else None)


def _phase_winograd(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The phase kernels of :func:`_phase_weights`, each placed in a 3x3 window at its phase offset,
    Winograd-transformed: (36, 4 * C_out, C_in), and the bias repeated per phase."""
    kernels, bias4 = _phase_weights(weight, bias)
    out_ch = weight.shape[0]
    window = kernels.new_zeros(kernels.shape[0], kernels.shape[1], 3, 3)
    for a in range(2):
        for b in range(2):
            p = 2 * a + b
            window[p * out_ch : (p + 1) * out_ch, :, a : a + 2, b : b + 2] = kernels[p * out_ch : (p + 1) * out_ch]
    return transform_weight(window), bias4


def upsample_conv_fusable(conv: nn.Conv2d) -> bool:
    """Whether :func:`nearest_upsample_conv` applies (3x3, stride 1, padding 1, no dilation/groups)."""
    return (
        conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
    )


def nearest_upsample_conv(owner: nn.Module, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(nearest_upsample_2x(x))`` computed as four 2x2 convolutions on ``x`` (sub-pixel form).

    Each output pixel of a 3x3 convolution over a nearest-upsampled map reads only 2x2 distinct input
    pixels, so summing the kernel taps that read the same pixel first is exact algebra: 4/9 of the
    multiply-adds, no 4x-sized upsampled input. (Round-off measured against float64: slightly
    smaller than the direct form.) ``owner`` keeps the combined kernels, rebuilt when the weights change.
    """
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    if inplace_ok() and winograd_eligible(conv, x, upsample=True):
        # the four 2x2 kernels placed in 3x3 windows (phase (a, b) at rows a..a+1, columns b..b+1)
        # give each phase's output aligned with x: one Winograd convolution writes all four, interleaved
        u, bias = cached_derived(owner, params, lambda: _phase_winograd(conv.weight, conv.bias), "winograd")
        return winograd_conv3x3(x, u, bias, phases=True)
    batch, _, height, width = x.shape
    out_ch = conv.out_channels
    out = torch.empty(batch, out_ch, 2 * height, 2 * width, dtype=x.dtype, device=x.device)
    phases = out.view(batch, out_ch, height, 2, width, 2)
    weight, bias = cached_derived(owner, params, lambda: _phase_weights(conv.weight, conv.bias))
    y = F.conv2d(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), padding=1)
    for a in range(2):
        for b in range(2):
            p = 2 * a + b
            phases[:, :, :, a, :, b] = y[:, p * out_ch : (p + 1) * out_ch, a : a + height, b : b + width]
    return out
