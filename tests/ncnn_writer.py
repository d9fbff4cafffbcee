"""A test-only writer of ncnn RRDBNet files (``.param`` text + ``.bin`` weights), written from the format's
description (ncnn ``paramdict.cpp`` / ``modelbin.cpp``), independently of :mod:`resshift.weights.ncnn`.

It lays the graph out as the ONNX-to-ncnn converter does for RRDBNet: ``Split`` layers before every
reused blob, 3x3 convolutions with a fused LeakyReLU (``9=2 -23310=1,0.2``) or a separate ``ReLU``
layer, ``Eltwise`` sums with coefficients 0.2 and 1 for the residuals, a ``BinaryOp`` add for the trunk
and nearest x2 ``Interp`` layers.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

FP16_TAG = 0x01306B47


def random_rrdbnet_state(nf: int = 8, gc: int = 32, nb: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random RRDBNet weights in the BasicSR key layout (x4: two upsampling stages)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(key: str, cout: int, cin: int) -> None:
        state[f"{key}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (0.5 / (cin * 9) ** 0.5)
        state[f"{key}.bias"] = torch.randn(cout, generator=g) * 0.01

    conv("conv_first", nf, 3)
    for b in range(nb):
        for r in (1, 2, 3):
            for k in range(1, 6):
                conv(f"body.{b}.rdb{r}.conv{k}", nf if k == 5 else gc, nf + (k - 1) * gc)
    conv("conv_body", nf, nf)
    conv("conv_up1", nf, nf)
    conv("conv_up2", nf, nf)
    conv("conv_hr", nf, nf)
    conv("conv_last", 3, nf)
    return state


class _Graph:
    def __init__(self, fused: bool) -> None:
        self.lines: list[str] = []
        self.fused = fused
        self.counter = 0
        self.bin = bytearray()
        self.fp16 = True

    def new_blob(self) -> str:
        self.counter += 1
        return f"b{self.counter}"

    def layer(self, kind: str, bottoms: list[str], params: str = "", top: str | None = None) -> str:
        top = top or self.new_blob()
        self.lines.append(f"{kind:<16} l{len(self.lines)} {len(bottoms)} 1 {' '.join(bottoms)} {top} {params}".rstrip())
        return top

    def conv(self, x: str, weight: torch.Tensor, bias: torch.Tensor, lrelu: bool, top: str | None = None) -> str:
        cout = weight.shape[0]
        act = " 9=2 -23310=1,2.000000e-01" if lrelu and self.fused else ""
        top = self.layer("Convolution", [x], f"0={cout} 1=3 4=1 5=1 6={weight.numel()}{act}", top)
        values = weight.reshape(-1).numpy()
        if self.fp16:
            data = values.astype("<f2").tobytes()
            self.bin += struct.pack("<I", FP16_TAG) + data + b"\0" * (-len(data) % 4)
        else:
            self.bin += struct.pack("<I", 0) + values.astype("<f4").tobytes()
        self.bin += bias.numpy().astype("<f4").tobytes()
        if lrelu and not self.fused:
            top = self.layer("ReLU", [top], "0=2.000000e-01")
        return top


def _with_splits(lines: list[str]) -> list[str]:
    """Insert a Split after every blob read by more than one layer (as the converter does)."""
    uses: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        tok = line.split()
        nb = int(tok[2])
        for b in tok[4:4 + nb]:
            uses.setdefault(b, []).append(i)
    out: list[str] = []
    rename: dict[tuple[int, str], str] = {}
    producers = {line.split()[4 + int(line.split()[2])]: i for i, line in enumerate(lines)}
    inserted_after: dict[int, list[str]] = {}
    for blob, readers in uses.items():
        if len(readers) < 2:
            continue
        tops = [f"{blob}_s{k}" for k in range(len(readers))]
        split = f"{'Split':<16} s_{blob} 1 {len(readers)} {blob} {' '.join(tops)}"
        inserted_after.setdefault(producers[blob], []).append(split)
        for k, reader in enumerate(readers):
            rename[(reader, blob)] = tops[k]
    for i, line in enumerate(lines):
        tok = line.split()
        nb = int(tok[2])
        for j in range(4, 4 + nb):
            tok[j] = rename.get((i, tok[j]), tok[j])
        out.append(" ".join(tok))
        out += inserted_after.get(i, [])
    return out


def write_rrdbnet_ncnn(state: dict[str, torch.Tensor], folder: Path, name: str = "net", *, fp16: bool = True,
                       fused: bool = True, coeff: float = 0.2) -> tuple[Path, Path]:
    """Write ``state`` (BasicSR RRDBNet layout, see :func:`random_rrdbnet_state`) as ``name.param`` /
    ``name.bin`` in ``folder`` (input blob ``data``, output blob ``output``); ``coeff`` is the residual
    scale written into the Eltwise layers."""
    g = _Graph(fused)
    g.fp16 = fp16
    nb = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    x = g.layer("Input", [], "0=0", top="data")

    def conv(x: str, key: str, lrelu: bool, top: str | None = None) -> str:
        return g.conv(x, state[f"{key}.weight"], state[f"{key}.bias"], lrelu, top)

    first = conv(x, "conv_first", False)
    h = first
    for b in range(nb):
        block_in = h
        for r in (1, 2, 3):
            feats = [h]
            for k in range(1, 6):
                src = feats[0] if k == 1 else g.layer("Concat", list(feats), "0=0")
                feats.append(conv(src, f"body.{b}.rdb{r}.conv{k}", k < 5))
            h = g.layer("Eltwise", [feats[-1], feats[0]], f"0=1 -23301=2,{coeff:e},1.000000e+00")
        h = g.layer("Eltwise", [h, block_in], f"0=1 -23301=2,{coeff:e},1.000000e+00")
    body = conv(h, "conv_body", False)
    h = g.layer("BinaryOp", [first, body], "0=0")
    for i in (1, 2):
        h = g.layer("Interp", [h], "0=1 1=2.000000e+00 2=2.000000e+00")
        h = conv(h, f"conv_up{i}", True)
    h = conv(h, "conv_hr", True)
    conv(h, "conv_last", False, top="output")
    lines = _with_splits(g.lines)
    blobs = set()
    for line in lines:
        tok = line.split()
        nb_, nt = int(tok[2]), int(tok[3])
        blobs.update(tok[4 + nb_:4 + nb_ + nt])
    folder.mkdir(parents=True, exist_ok=True)
    param, weights = folder / f"{name}.param", folder / f"{name}.bin"
    param.write_text("7767517\n" + f"{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n")
    weights.write_bytes(bytes(g.bin))
    return param, weights


def fp16_rounded(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The kernels rounded to float16 as the writer stores them (biases stay float32)."""
    return {k: (v.to(torch.float16).to(torch.float32) if k.endswith(".weight") else v) for k, v in state.items()}


def to_nchw_numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x[0].numpy())
