"""ncnn model files (``.param`` graph + ``.bin`` weights) read into PyTorch state dicts.

Several released SR networks reach the package registries only as ncnn conversions (the
``*-ncnn-vulkan`` projects and the ``sr-vulkan-model-*`` packages ship Real-ESRGAN x4plus and the
RealSR DF2K / DF2K-JPEG networks that way). This module reads such a pair without the ncnn runtime
and, for an architecture it knows, names every weight as the official PyTorch key layout does, so
spandrel loads the result like the released ``.pth``.

Format (ncnn ``src/paramdict.cpp``, ``src/modelbin.cpp``, ``src/net.cpp``):

* ``.param``: the magic ``7767517``; ``layer_count blob_count``; one line per layer:
  ``type name bottom_count top_count bottoms... tops... key=value...``. A value is an int, a float
  (written with ``.``/``e``) or, under the key ``-23300 - id``, an array ``count,v1,v2,...``.
* ``.bin``: the layers' weights in ``.param`` order, nothing between them. A Convolution stores its
  ``weight_data_size`` kernel values as ``[out][in][kh][kw]`` behind a 4-byte tag (``0x01306B47``:
  IEEE float16, padded to 4 bytes; ``0`` or ``0x0002C056``: float32; ``0x000D4B38``: int8; any
  other non-zero tag: a 256-entry float32 table and one-byte indices), then its ``num_output``
  biases as raw float32 (no tag) when ``bias_term=1``.

float16 values are widened to float32 exactly, so a state dict read from an fp16 file holds the
fp16-rounded values of the release it was converted from, nothing else.

Errors (:class:`NcnnFormatError`, a ``ValueError``) name the file, the line or layer and the
problem: a bad magic, a blob used before it is produced, a layer type whose weights this reader
cannot size, a weight tag it does not read, a file too short or too long, and (for
:func:`rrdbnet_state_dict`) every place where the graph is not the architecture's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from resshift.download import WeightsError

PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056
_ARRAY_KEY_BASE = -23300

# Layer types that hold no weights in the .bin (every one a RRDBNet or similar SR graph uses).
_WEIGHTLESS = frozenset({
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Sigmoid", "TanH", "Clip",
    "PixelShuffle", "Crop", "Padding", "Reshape", "Permute", "Flatten", "UnaryOp", "Noop", "Dropout",
})


class NcnnFormatError(WeightsError, ValueError):
    """An ncnn ``.param``/``.bin`` pair cannot be read, or is not the expected network."""


ParamValue = int | float | tuple[float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file.

    Attributes:
        type: the ncnn layer class (``"Convolution"``).
        name: the layer's name in the file.
        bottoms / tops: input and output blob names.
        params: ``{id: value}``; arrays under their id (not the ``-23300 - id`` file key).
        line: line number in the ``.param`` file (1-based), for messages.
    """

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, ParamValue]
    line: int

    def get(self, key: int, default: ParamValue) -> ParamValue:
        return self.params.get(key, default)


@dataclass(frozen=True)
class ConvWeights:
    """A Convolution's weights as read: ``weight`` ``(out, in, kh, kw)`` float32, ``bias`` ``(out,)``
    float32 or ``None``, and the storage of the kernel in the file (``"fp16"`` or ``"fp32"``)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    storage: str


@dataclass
class NcnnModel:
    """A read ``.param``/``.bin`` pair: the layers in file order and each Convolution's weights."""

    param_path: Path
    bin_path: Path
    layers: list[NcnnLayer]
    conv: dict[str, ConvWeights] = field(default_factory=dict)

    @property
    def storages(self) -> set[str]:
        """The kernel storages found (``{"fp16"}`` for the fp16 conversions)."""
        return {w.storage for w in self.conv.values()}


def _parse_value(text: str, where: str) -> float | int:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise NcnnFormatError(f"{where}: {text!r} is not a number") from None


def read_param(path: str | Path) -> list[NcnnLayer]:
    """The layers of a ``.param`` file, checked for the magic, the counts and the blob flow.

    Raises:
        NcnnFormatError: naming the file and line of the first problem.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise NcnnFormatError(f"{path}: cannot be read as an ncnn .param file ({exc})") from exc
    rows = [(i + 1, ln.split()) for i, ln in enumerate(lines) if ln.strip()]
    if not rows or rows[0][1] != [str(PARAM_MAGIC)]:
        raise NcnnFormatError(f"{path}: not an ncnn .param file (first line must be the magic {PARAM_MAGIC})")
    if len(rows) < 2 or len(rows[1][1]) != 2 or not all(t.isdigit() for t in rows[1][1]):
        raise NcnnFormatError(f"{path}: line 2 must be 'layer_count blob_count'")
    layer_count, blob_count = (int(t) for t in rows[1][1])
    body = rows[2:]
    if len(body) != layer_count:
        raise NcnnFormatError(f"{path}: the header says {layer_count} layers, the file has {len(body)}")
    layers: list[NcnnLayer] = []
    produced: set[str] = set()
    for line, tok in body:
        where = f"{path}:{line}"
        if len(tok) < 4 or not tok[2].isdigit() or not tok[3].isdigit():
            raise NcnnFormatError(f"{where}: expected 'type name bottom_count top_count ...'")
        nb, nt = int(tok[2]), int(tok[3])
        if len(tok) < 4 + nb + nt:
            raise NcnnFormatError(f"{where}: layer {tok[1]!r} lists fewer blobs than its counts say")
        bottoms, tops = tuple(tok[4:4 + nb]), tuple(tok[4 + nb:4 + nb + nt])
        params: dict[int, ParamValue] = {}
        for item in tok[4 + nb + nt:]:
            key_text, eq, value = item.partition("=")
            try:
                key = int(key_text)
            except ValueError:
                raise NcnnFormatError(f"{where}: layer {tok[1]!r}: bad parameter {item!r}") from None
            if not eq:
                raise NcnnFormatError(f"{where}: layer {tok[1]!r}: bad parameter {item!r}")
            if key <= _ARRAY_KEY_BASE:
                count_text, _, rest = value.partition(",")
                values = tuple(float(_parse_value(v, where)) for v in rest.split(",")) if rest else ()
                if not count_text.isdigit() or int(count_text) != len(values):
                    raise NcnnFormatError(f"{where}: layer {tok[1]!r}: array {item!r} has a wrong count")
                params[_ARRAY_KEY_BASE - key] = values
            else:
                params[key] = _parse_value(value, where)
        missing = [b for b in bottoms if b not in produced]
        if missing:
            raise NcnnFormatError(f"{where}: layer {tok[1]!r} reads blob(s) {missing} before any layer produces them")
        produced.update(tops)
        layers.append(NcnnLayer(tok[0], tok[1], bottoms, tops, params, line))
    if len(produced) != blob_count:
        raise NcnnFormatError(f"{path}: the header says {blob_count} blobs, the layers produce {len(produced)}")
    return layers


class _Reader:
    """Sequential reads from the ``.bin`` bytes with the file named in errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as exc:
            raise NcnnFormatError(f"{path}: cannot be read ({exc})") from exc
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise NcnnFormatError(
                f"{self.path}: file ends at byte {len(self.data)} while reading {what} "
                f"({n} bytes from byte {self.pos}); the .bin does not belong to this .param"
            )
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def tagged(self, count: int, what: str) -> tuple[np.ndarray, str]:
        """``count`` values behind a 4-byte storage tag, as float32 (``modelbin.cpp``, type 0)."""
        head = self.take(4, f"the storage tag of {what}")
        tag = int.from_bytes(head, "little")
        if tag == TAG_FP16:
            raw = self.take((2 * count + 3) // 4 * 4, f"{what} (float16)")
            return np.frombuffer(raw[:2 * count], dtype="<f2").astype(np.float32), "fp16"
        if tag in (0, TAG_FP32_SCALED):
            return self.raw_float32(count, what), "fp32"
        if tag == TAG_INT8:
            raise NcnnFormatError(f"{self.path}: {what} is int8-quantised (tag 0x{tag:08X}); only float16 and "
                                  "float32 weights are read")
        raise NcnnFormatError(f"{self.path}: {what} has storage tag 0x{tag:08X} (a quantisation table); only "
                              "float16 and float32 weights are read")

    def raw_float32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, f"{what} (float32)"), dtype="<f4").astype(np.float32)


def read_model(param_path: str | Path, bin_path: str | Path) -> NcnnModel:
    """Read a ``.param``/``.bin`` pair: every Convolution's kernel and bias as float32 tensors.

    Raises:
        NcnnFormatError: the ``.param`` is malformed (see :func:`read_param`), a layer type with
            weights other than Convolution appears, a Convolution's sizes disagree, a storage tag is
            not float16/float32, or the ``.bin`` is shorter or longer than the graph needs.
    """
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = read_param(param_path)
    reader = _Reader(bin_path)
    model = NcnnModel(param_path, bin_path, layers)
    for layer in layers:
        where = f"{param_path}:{layer.line}: layer {layer.name!r} ({layer.type})"
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise NcnnFormatError(f"{where}: this reader cannot size the weights of a {layer.type} layer")
        out_c = int(layer.get(0, 0))
        kw = int(layer.get(1, 0))
        kh = int(layer.get(11, kw))
        size = int(layer.get(6, 0))
        if int(layer.get(8, 0)) or int(layer.get(19, 0)):
            raise NcnnFormatError(f"{where}: int8-quantised or dynamic-weight convolutions are not read")
        if out_c <= 0 or kw <= 0 or kh <= 0 or size <= 0 or size % (out_c * kh * kw):
            raise NcnnFormatError(f"{where}: weight_data_size {size} is not num_output {out_c} x {kh}x{kw} x inputs")
        values, storage = reader.tagged(size, f"the kernel of layer {layer.name!r}")
        weight = torch.from_numpy(values.copy()).reshape(out_c, size // (out_c * kh * kw), kh, kw)
        bias = None
        if int(layer.get(5, 0)):
            bias = torch.from_numpy(reader.raw_float32(out_c, f"the bias of layer {layer.name!r}").copy())
        model.conv[layer.name] = ConvWeights(weight, bias, storage)
    if reader.pos != len(reader.data):
        raise NcnnFormatError(
            f"{bin_path}: {len(reader.data) - reader.pos} bytes left after the last layer of {param_path}; "
            "the .bin does not belong to this .param"
        )
    return model


# ------------------------------------------------------------------------------------------ RRDBNet


@dataclass(frozen=True)
class _Op:
    """One expected operation of an architecture's graph (see :func:`_match`)."""

    kind: str  # "input", "conv", "concat", "residual" (Eltwise a*x + b*y), "add", "upsample"
    inputs: tuple[int, ...] = ()
    key: str = ""  # state-dict prefix of a conv
    out_channels: int = 0
    in_channels: int = 0
    lrelu: bool = False
    coeffs: tuple[float, ...] = ()


def _rrdbnet_program(nf: int, gc: int, nb: int, n_up: int, in_nc: int, out_nc: int) -> list[_Op]:
    """RRDBNet (Wang et al., ESRGAN, ECCVW 2018; BasicSR ``rrdbnet_arch.py``) as a list of operations
    whose ``inputs`` are indices of earlier operations; conv keys in the BasicSR layout."""
    ops: list[_Op] = []

    def emit(op: _Op) -> int:
        ops.append(op)
        return len(ops) - 1

    x = emit(_Op("input"))
    first = emit(_Op("conv", (x,), "conv_first", nf, in_nc))
    h = first
    for b in range(nb):
        block_in = h
        for r in (1, 2, 3):
            rdb_in, feats = h, [h]
            for k in range(1, 6):
                src = feats[0] if k == 1 else emit(_Op("concat", tuple(feats)))
                feats.append(emit(_Op("conv", (src,), f"body.{b}.rdb{r}.conv{k}", nf if k == 5 else gc,
                                      nf + (k - 1) * gc, lrelu=k < 5)))
            h = emit(_Op("residual", (feats[-1], rdb_in), coeffs=(0.2, 1.0)))
        h = emit(_Op("residual", (h, block_in), coeffs=(0.2, 1.0)))
    body = emit(_Op("conv", (h,), "conv_body", nf, nf))
    h = emit(_Op("add", (first, body)))
    for i in range(1, n_up + 1):
        h = emit(_Op("upsample", (h,)))
        h = emit(_Op("conv", (h,), f"conv_up{i}", nf, nf, lrelu=True))
    h = emit(_Op("conv", (h,), "conv_hr", nf, nf, lrelu=True))
    emit(_Op("conv", (h,), "conv_last", out_nc, nf))
    return ops


def _lrelu_slope(layer: NcnnLayer) -> float | None:
    """The slope of a ReLU layer (0 = plain ReLU)."""
    return float(layer.get(0, 0.0)) if layer.type == "ReLU" else None


def _fused_activation(layer: NcnnLayer) -> tuple[int, tuple[float, ...]]:
    params = layer.get(10, ())
    return int(layer.get(9, 0)), params if isinstance(params, tuple) else (float(params),)


def _match(model: NcnnModel, program: list[_Op], arch: str) -> dict[str, torch.Tensor]:
    """Walk the file's layers in order (Splits are aliases) against ``program``; the state dict."""
    source = f"{model.param_path}"
    alias: dict[str, str] = {}

    def resolve(blob: str) -> str:
        while blob in alias:
            blob = alias[blob]
        return blob

    layers: Iterator[NcnnLayer] = iter(model.layers)

    def next_layer(what: str) -> NcnnLayer:
        while True:
            layer = next(layers, None)
            if layer is None:
                raise NcnnFormatError(f"{source}: the graph ends where {arch} expects {what}")
            if layer.type == "Split":
                if len(layer.bottoms) != 1:
                    raise NcnnFormatError(f"{source}:{layer.line}: Split {layer.name!r} has "
                                          f"{len(layer.bottoms)} inputs")
                for top in layer.tops:
                    alias[top] = resolve(layer.bottoms[0])
                continue
            return layer

    produced: dict[int, str] = {}  # op index -> blob name
    state: dict[str, torch.Tensor] = {}

    def fail(layer: NcnnLayer, op: _Op, problem: str) -> NcnnFormatError:
        what = op.key or op.kind
        return NcnnFormatError(f"{source}:{layer.line}: layer {layer.name!r} ({layer.type}) is not the {arch} "
                               f"graph's {what}: {problem}")

    for index, op in enumerate(program):
        layer = next_layer(op.key or op.kind)
        expected_in = [produced[i] for i in op.inputs]
        actual_in = [resolve(b) for b in layer.bottoms]
        if op.kind == "add":
            ok_inputs = sorted(actual_in) == sorted(expected_in)
        else:
            ok_inputs = actual_in == expected_in
        if op.kind == "input":
            if layer.type != "Input" or len(layer.tops) != 1:
                raise fail(layer, op, "expected the Input layer")
        elif not ok_inputs:
            raise fail(layer, op, f"reads {list(layer.bottoms)}, expected the outputs of the layers producing "
                                  f"{expected_in}")
        if len(layer.tops) != 1:
            raise fail(layer, op, f"{len(layer.tops)} outputs, expected one")
        if op.kind == "conv":
            if layer.type != "Convolution":
                raise fail(layer, op, "expected a Convolution")
            w = model.conv[layer.name]
            geometry = (int(layer.get(1, 0)), int(layer.get(11, layer.get(1, 0))), int(layer.get(2, 1)),
                        int(layer.get(12, layer.get(2, 1))), int(layer.get(3, 1)), int(layer.get(13, layer.get(3, 1))))
            pads = (int(layer.get(4, 0)), int(layer.get(14, layer.get(4, 0))), int(layer.get(15, layer.get(4, 0))),
                    int(layer.get(16, layer.get(14, layer.get(4, 0)))))
            if geometry != (3, 3, 1, 1, 1, 1) or pads != (1, 1, 1, 1) or float(layer.get(18, 0.0)) != 0.0:
                raise fail(layer, op, f"kernel/dilation/stride {geometry}, padding {pads}: a 3x3 stride-1 "
                                      "zero-padded convolution was expected")
            if tuple(w.weight.shape) != (op.out_channels, op.in_channels, 3, 3) or w.bias is None:
                has_bias = "present" if w.bias is not None else "absent"
                raise fail(layer, op, f"weight {tuple(w.weight.shape)}, bias {has_bias}; "
                                      f"expected ({op.out_channels}, {op.in_channels}, 3, 3) with a bias")
            act, act_params = _fused_activation(layer)
            top = layer.tops[0]
            if act == 2 and act_params[:1] == (0.2,) and op.lrelu:
                pass
            elif act == 0 and op.lrelu:  # an unfused activation: a ReLU layer with slope 0.2 must follow
                relu = next_layer(f"the LeakyReLU after {op.key}")
                if _lrelu_slope(relu) != 0.2 or [resolve(b) for b in relu.bottoms] != [resolve(top)]:
                    raise fail(relu, op, "expected a ReLU layer with slope 0.2 on the convolution's output")
                top = relu.tops[0]
            elif act != 0 or op.lrelu:
                raise fail(layer, op, f"activation type {act} {list(act_params)}; expected "
                                      f"{'LeakyReLU 0.2' if op.lrelu else 'none'}")
            state[f"{op.key}.weight"] = w.weight
            state[f"{op.key}.bias"] = w.bias
            produced[index] = resolve(top)
            continue
        if op.kind == "concat":
            if layer.type != "Concat" or int(layer.get(0, 0)) != 0:
                raise fail(layer, op, "expected a channel Concat (axis 0)")
        elif op.kind == "residual":
            coeffs = layer.get(1, ())
            if layer.type != "Eltwise" or int(layer.get(0, 1)) != 1 or tuple(coeffs) != op.coeffs:
                raise fail(layer, op, f"expected an Eltwise sum with coefficients {list(op.coeffs)}")
        elif op.kind == "add":
            if layer.type == "BinaryOp":
                if int(layer.get(0, 0)) != 0 or int(layer.get(1, 0)) != 0:
                    raise fail(layer, op, "expected a BinaryOp add of two blobs")
            elif not (layer.type == "Eltwise" and int(layer.get(0, 1)) == 1
                      and tuple(layer.get(1, ())) in ((), (1.0, 1.0))):
                raise fail(layer, op, "expected an addition of two blobs")
        elif op.kind == "upsample":
            scales = (float(layer.get(1, 1.0)), float(layer.get(2, 1.0)))
            if layer.type != "Interp" or int(layer.get(0, 0)) != 1 or scales != (2.0, 2.0):
                raise fail(layer, op, "expected a nearest-neighbour x2 Interp")
        produced[index] = resolve(layer.tops[0])
    for layer in layers:
        if layer.type != "Split":
            raise NcnnFormatError(f"{source}:{layer.line}: layer {layer.name!r} ({layer.type}) follows the last layer "
                                  f"of the {arch} graph")
    return state


def rrdbnet_state_dict(model: NcnnModel) -> dict[str, torch.Tensor]:
    """The RRDBNet state dict (BasicSR key layout: ``conv_first``, ``body.N.rdbR.convK``, ``conv_body``,
    ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``) of an ncnn RRDBNet conversion.

    The widths (``nf``, ``gc``), the block count and the number of x2 upsampling stages are read from
    the graph; then every layer is checked against RRDBNet's graph in order: types, inputs (through
    Splits), kernel geometry, channel counts, activations (fused LeakyReLU 0.2 or a ReLU layer), the
    0.2-scaled residuals, the trunk addition and the nearest x2 upsampling.

    Raises:
        NcnnFormatError: naming the ``.param`` file, line, layer and the difference.
    """
    convs = [layer for layer in model.layers if layer.type == "Convolution"]
    n_up = sum(layer.type == "Interp" for layer in model.layers)
    n_blocks, rest = divmod(len(convs) - 4 - n_up, 15)
    if not convs or rest or n_blocks < 1 or len(convs) < 17:
        raise NcnnFormatError(f"{model.param_path}: {len(convs)} convolutions and {n_up} upsampling layers do not "
                              "make an RRDBNet (1 + 15 per block + 1 + one per x2 stage + 2)")
    first, rdb_conv1 = model.conv[convs[0].name].weight, model.conv[convs[1].name].weight
    last = model.conv[convs[-1].name].weight
    program = _rrdbnet_program(nf=first.shape[0], gc=rdb_conv1.shape[0], nb=n_blocks, n_up=n_up,
                               in_nc=first.shape[1], out_nc=last.shape[0])
    return _match(model, program, f"RRDBNet ({n_blocks} blocks, x{2 ** n_up})")


#: Architectures this module can convert, by the spandrel architecture id of the weights table.
CONVERTERS = {"ESRGAN": rrdbnet_state_dict}


def convert(param_path: str | Path, bin_path: str | Path,
            architecture: str) -> tuple[dict[str, torch.Tensor], NcnnModel]:
    """Read an ncnn pair and convert it to ``architecture``'s PyTorch state dict.

    Returns the state dict and the read model (its :attr:`NcnnModel.storages` say whether the weights
    were float16). Raises :class:`NcnnFormatError` for an unknown architecture or any mismatch.
    """
    try:
        converter = CONVERTERS[architecture]
    except KeyError:
        known = ", ".join(CONVERTERS)
        raise NcnnFormatError(f"no ncnn converter for architecture {architecture!r} (known: {known})") from None
    model = read_model(param_path, bin_path)
    return converter(model), model
