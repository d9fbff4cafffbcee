from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from resshift.io import ImageReadError, list_images, read_image, read_image_with_info, tensor_to_uint8, write_png


def _rgb(h: int = 5, w: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".webp"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    arr = _rgb()
    path = tmp_path / f"a{suffix}"
    if suffix == ".webp":
        Image.fromarray(arr).save(path, lossless=True)
    else:
        Image.fromarray(arr).save(path)
    x = read_image(path)
    assert x.shape == (3, 5, 7) and x.dtype == torch.float32
    assert np.array_equal(tensor_to_uint8(x), arr)


def test_png_writer_round_trip_and_rounding(tmp_path: Path) -> None:
    x = torch.tensor([0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 1.0, 1.7, -0.2]).view(1, 1, 7).expand(3, 1, 7)
    path = write_png(tmp_path / "out.png", x)
    back = np.asarray(Image.open(path))
    assert back.shape == (1, 7, 3)
    # clamp, x255, round half to even (torch.round): 0.5 -> 0, 1.49 -> 1, 1.51 -> 2
    assert back[0, :, 0].tolist() == [0, 0, 1, 2, 255, 255, 0]
    assert not list(tmp_path.glob("*.part"))


def test_channel_order_is_rgb(tmp_path: Path) -> None:
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[..., 0] = 255  # pure red in RGB
    Image.fromarray(arr).save(tmp_path / "red.png")
    x = read_image(tmp_path / "red.png")
    assert x[0].min() == 1.0 and x[1].max() == 0.0 and x[2].max() == 0.0


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    g = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    x, info = read_image_with_info(tmp_path / "g.png")
    assert x.shape == (3, 3, 4)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert torch.allclose(x[0] * 255, torch.from_numpy(g).float())
    assert "grayscale" in " ".join(info.notes)


def test_rgba_drops_alpha_with_note(tmp_path: Path) -> None:
    arr = _rgb()
    rgba = np.concatenate([arr, np.full((5, 7, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    x, info = read_image_with_info(tmp_path / "a.png")
    assert np.array_equal(tensor_to_uint8(x), arr)
    assert any("alpha channel dropped (NOT fully opaque)" in n for n in info.notes)


def test_16bit_png_keeps_precision(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 65536, size=(4, 6, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), arr[..., ::-1])  # cv2 writes BGR
    x, info = read_image_with_info(tmp_path / "d.png")
    assert info.bit_depth == 16
    expected = torch.from_numpy(arr.astype(np.float32) / np.float32(65535)).permute(2, 0, 1)
    assert torch.equal(x, expected)


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    # A 16x32 (h x w) image stored sideways with orientation 6 (display = rotate 90 deg clockwise).
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = 255  # left half white as stored
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    x, info = read_image_with_info(tmp_path / "r.jpg")
    assert info.exif_orientation == 6
    assert x.shape == (3, 32, 16)  # upright: portrait
    # stored left half becomes the top half after a clockwise rotation
    assert x[:, :14].mean() > 0.9 and x[:, 18:].mean() < 0.1
    raw = read_image(tmp_path / "r.jpg", apply_exif=False)
    assert raw.shape == (3, 16, 32)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match=r"broken\.png: not a decodable image"):
        read_image(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: file is empty"):
        read_image(empty)
    with pytest.raises(ImageReadError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png")


def test_list_images_sorted_and_filtered(tmp_path: Path) -> None:
    for n in ["b.png", "a.JPG", "c.txt", "d.webp"]:
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "d.webp"]


def test_realset65_rgba_files_read_as_rgb(shared_datasets: Path) -> None:
    folder = shared_datasets / "resshift-testdata" / "RealSet65"
    x, info = read_image_with_info(folder / "penguin1.png")
    assert x.shape[0] == 3 and info.channels_in_file == 4
    assert "alpha channel dropped (fully opaque)" in info.notes


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, orientation):
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)  # non-square, asymmetric content
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = tensor_to_uint8(read_image(path))
    assert got.shape == expected.shape and np.array_equal(got, expected), orientation


def test_hidden_files_are_not_images(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / ".cache").mkdir()
    write_png(tmp_path / ".cache" / "b.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "sub" / "c.png", np.zeros((4, 4, 3), np.uint8))
    assert list_images(tmp_path) == [tmp_path / "a.png"]
    assert list_images(tmp_path, recursive=True) == [tmp_path / "a.png", tmp_path / "sub" / "c.png"]

def test_conversions_by_row_blocks_equal_the_whole_image_formulas() -> None:
    """tensor_to_uint8 works by blocks of rows and array_to_tensor fills one buffer in place: same
    values as the one-shot formulas, across several blocks and for grayscale and 16-bit inputs."""
    from resshift.io import _UINT8_ROWS, array_to_tensor

    x = torch.rand(3, 2 * _UINT8_ROWS + 37, 19, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    expected = x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(tensor_to_uint8(x), expected)
    assert np.array_equal(tensor_to_uint8(x[:1]), np.repeat(expected[..., :1], 3, axis=2))
    for arr, scale in ((_rgb(600, 9), 255.0), (_rgb(40, 9).astype(np.uint16) * 257, 65535.0)):
        t = array_to_tensor(arr)
        assert t.is_contiguous() and t.dtype == torch.float32
        assert torch.equal(t, torch.from_numpy(arr.astype(np.float32) / np.float32(scale)).permute(2, 0, 1))
