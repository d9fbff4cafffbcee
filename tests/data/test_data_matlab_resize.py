"""MATLAB-compatible bicubic imresize: known values and the Bicubicx4 pairs."""

from __future__ import annotations

import pytest
import torch

from resshift.data.degradations.matlab_resize import bicubic_downscale_8bit, cubic, imresize, resize_matrix
from resshift.io import list_images, read_image


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    # Keys a=-0.5: k(0)=1, k(0.5)=0.5625, k(1)=0, k(1.5)=-0.0625, k(2)=0, outside 0; symmetric.
    expected = torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625])
    torch.testing.assert_close(cubic(x), expected)


# Reference outputs of MATLAB imresize (8x10 uint8 input), as published in the test suite of
# GNU Octave's image package (imresize.m, "reference results from matlab"). MATLAB rounds integer
# outputs with an optimised path, so a difference of 1 grey level is accepted, as Octave does.
_IN = [
    [116, 227, 153, 69, 146, 194, 59, 130, 139, 106],
    [2, 47, 137, 249, 90, 75, 16, 24, 158, 44],
    [155, 68, 46, 84, 166, 156, 69, 204, 32, 152],
    [71, 221, 137, 230, 210, 153, 192, 115, 30, 118],
    [107, 143, 108, 52, 51, 73, 101, 21, 175, 90],
    [54, 158, 143, 77, 26, 168, 113, 229, 165, 225],
    [9, 47, 133, 135, 130, 207, 236, 43, 19, 73],
    [129, 60, 59, 243, 64, 181, 249, 56, 32, 86],
]
_MATLAB = {
    (0.5, True): [[105, 140, 126, 81, 109], [110, 134, 153, 114, 93], [108, 108, 94, 127, 146],
                  [67, 126, 162, 149, 62]],
    (0.5, False): [[92, 164, 123, 38, 118], [139, 116, 188, 167, 69], [121, 87, 67, 108, 180],
                   [54, 153, 141, 149, 42]],
    (1 / 3, True): [[115, 135, 97, 101], [113, 119, 124, 125], [81, 157, 118, 64]],
    (1 / 3, False): [[47, 90, 24, 44], [143, 51, 21, 90], [60, 64, 56, 86]],
    (4 / 3, True): [
        [116, 203, 221, 141, 62, 110, 180, 191, 70, 104, 143, 136, 111, 106],
        [26, 78, 126, 156, 200, 139, 103, 103, 33, 28, 92, 158, 67, 46],
        [51, 35, 51, 112, 195, 146, 101, 87, 29, 57, 100, 114, 81, 74],
        [159, 110, 63, 50, 82, 148, 179, 152, 83, 173, 147, 27, 143, 170],
        [70, 171, 189, 134, 217, 226, 193, 158, 186, 157, 83, 25, 114, 135],
        [91, 152, 162, 116, 118, 114, 102, 98, 138, 65, 60, 127, 92, 84],
        [90, 130, 144, 111, 52, 24, 50, 101, 94, 86, 129, 190, 146, 135],
        [41, 114, 157, 139, 89, 37, 82, 178, 125, 192, 203, 154, 213, 227],
        [4, 33, 89, 141, 127, 118, 151, 213, 232, 119, 35, 34, 81, 92],
        [88, 61, 54, 97, 203, 129, 115, 203, 255, 119, 18, 24, 70, 81],
        [147, 91, 43, 68, 247, 125, 80, 191, 255, 130, 33, 37, 83, 94],
    ],
    (1.5, True): [
        [116, 187, 237, 171, 94, 61, 135, 191, 187, 75, 91, 142, 140, 124, 108],
        [43, 92, 143, 149, 164, 163, 119, 123, 118, 44, 38, 80, 151, 118, 62],
        [13, 21, 47, 107, 195, 228, 115, 81, 70, 24, 19, 56, 137, 105, 48],
        [146, 98, 49, 49, 71, 107, 148, 159, 132, 58, 124, 176, 61, 85, 146],
        [118, 139, 144, 92, 116, 168, 201, 188, 159, 140, 167, 158, 27, 69, 153],
        [61, 151, 218, 145, 174, 219, 201, 164, 146, 187, 148, 84, 48, 76, 115],
        [102, 132, 151, 119, 90, 72, 72, 72, 83, 114, 60, 31, 144, 130, 80],
        [81, 121, 154, 133, 87, 41, 19, 67, 116, 95, 108, 140, 183, 180, 163],
        [37, 95, 152, 150, 117, 73, 35, 108, 179, 130, 174, 214, 153, 176, 219],
        [3, 29, 73, 131, 136, 120, 116, 162, 214, 229, 147, 54, 35, 62, 96],
        [67, 54, 51, 83, 153, 187, 111, 141, 210, 255, 149, 22, 13, 42, 74],
        [142, 99, 53, 43, 164, 237, 77, 103, 197, 254, 159, 42, 31, 59, 91],
    ],
}


@pytest.mark.parametrize("scale,antialias", list(_MATLAB))
def test_matches_published_matlab_outputs(scale, antialias):
    x = torch.tensor(_IN, dtype=torch.float64)
    ours = imresize(x, scale, antialias=antialias).round().clamp(0, 255)
    ref = torch.tensor(_MATLAB[(scale, antialias)], dtype=torch.float64)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1


def test_matches_matlab_float_values_for_a_two_pixel_row():
    # MATLAB: imresize([10 6], [1 3], 'cubic') -> [10.27777777777777, 8, 5.72222222222222]
    out = imresize(torch.tensor([[10.0, 6.0]], dtype=torch.float64), size=(1, 3))
    ref = torch.tensor([[10.27777777777777, 8.0, 5.72222222222222]], dtype=torch.float64)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_weights_rows_sum_to_one_and_constant_is_preserved():
    for n_in, n_out in [(256, 64), (37, 10), (10, 37), (7, 7 * 4)]:
        m = resize_matrix(n_in, n_out, dtype=torch.float64)
        torch.testing.assert_close(m.sum(1), torch.ones(n_out, dtype=torch.float64))
    x = torch.full((2, 3, 40, 24), 0.3)
    torch.testing.assert_close(imresize(x, 0.25), torch.full((2, 3, 10, 6), 0.3))


def test_output_size_is_ceil_and_batch_matches_single():
    x = torch.rand(3, 3, 50, 33)
    y = imresize(x, 0.25)
    assert y.shape == (3, 3, 13, 9)
    torch.testing.assert_close(y[1], imresize(x[1], 0.25))


def test_antialias_flag_changes_downscale_only():
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert not torch.allclose(imresize(x, 0.5), imresize(x, 0.5, antialias=False))
    torch.testing.assert_close(imresize(x, 2.0), imresize(x, 2.0, antialias=False))


def test_bicubicx4_lr_reproduced_within_one_grey_level(shared_datasets):
    root = shared_datasets / "resshift-testdata" / "Bicubicx4"
    gts = list_images(root / "gt")
    assert len(gts) == 16
    worst = 0.0
    for gt_path in gts:
        gt = read_image(gt_path)
        lr = read_image(root / "lq_matlab" / gt_path.name)
        ours = bicubic_downscale_8bit(gt, 4)
        assert ours.shape == lr.shape == (3, 64, 64)
        worst = max(worst, (ours - lr).abs().max().item() * 255)
    assert worst <= 1.0 + 1e-4
