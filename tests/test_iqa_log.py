"""Reading the per-image log of OSEDiff's test_metrics.py: the format, and errors naming file:line."""

from __future__ import annotations

import math

import pytest

from resshift.metrics import METRICS
from resshift.reports.iqa_log import (
    OSEDIFF_COLUMNS,
    IqaLogError,
    parse_iqa_log,
    pyiqa_psnr_from_float_y,
    read_iqa_log,
)

# Lines as test_metrics.py writes them (logging prefix, '\n' inside the average message).
_T = "24-10-23 17:29:0"
LOG = "\n".join([
    "24-10-23 17:28:54.191 - INFO: ===== Configuration =====",
    "24-10-23 17:28:54.191 - INFO:   inp_imgs: ['preset/datasets/benchmark_realsr/results_osediff']",
    "  gt_imgs: ['preset/datasets/benchmark_realsr/test_HR']",
    "  log_name: METRICS",
    "",
    f"{_T}2.211 - INFO: Directory [results_osediff]: 2 GT images vs 2 SR images.",
    f"{_T}2.221 - INFO: Testing Directory: [results_osediff]",
    f"{_T}3.278 - INFO: results_osediff/Canon_001_LR4.png | PSNR: 25.793726; SSIM: 0.851268; NIQE: 5.673670"
    " | Runtime: 1.06 sec",
    f"{_T}3.687 - INFO: results_osediff/Canon_002_LR4.png | PSNR: 24.045864; SSIM: 0.735231; NIQE: 5.823664"
    " | Runtime: 0.41 sec",
    "24-10-23 17:29:51.394 - INFO: ",  # the average message starts with a newline
    "===== Average Metrics for [results_osediff] =====",
    "PSNR: 24.9198; SSIM: 0.7932; NIQE: 5.7487 | FID: 123.493817 | FID Runtime: 6.79 sec",
    "",
    "24-10-23 17:29:51.394 - INFO: ===== Evaluation Completed =====",
    "",
])


def test_parses_images_columns_averages_and_fid():
    sections = parse_iqa_log(LOG, "t.log")
    assert list(sections) == ["results_osediff"]
    sec = sections["results_osediff"]
    assert list(sec.images) == ["Canon_001_LR4", "Canon_002_LR4"]
    assert sec.files["Canon_002_LR4"] == "Canon_002_LR4.png" and sec.lines["Canon_002_LR4"] == 9
    assert sec.columns == ["PSNR", "SSIM", "NIQE"]
    assert sec.images["Canon_001_LR4"] == {"PSNR": 25.793726, "SSIM": 0.851268, "NIQE": 5.673670}
    assert sec.column("SSIM") == {"Canon_001_LR4": 0.851268, "Canon_002_LR4": 0.735231}
    assert sec.averages == {"PSNR": 24.9198, "SSIM": 0.7932, "NIQE": 5.7487}
    assert sec.fid == 123.493817 and sec.average_line == 12
    # the logged average is the mean of the logged per-image values, rounded to 4 decimals
    for col in sec.columns:
        mean = sum(sec.column(col).values()) / 2
        assert abs(mean - sec.averages[col]) <= 5e-5 + 1e-12
    with pytest.raises(KeyError, match="no column 'LPIPS'"):
        sec.column("LPIPS")


def test_two_folders_and_missing_average_block():
    text = ("a/x.png | PSNR: 1.0; SSIM: 0.5\n"
            "b/x.png | PSNR: 2.0; SSIM: 0.6 | Runtime: 0.1 sec\n")
    sections = parse_iqa_log(text)
    assert list(sections) == ["a", "b"] and sections["b"].images["x"]["PSNR"] == 2.0
    assert sections["a"].averages == {} and sections["a"].fid is None


@pytest.mark.parametrize("bad_line, message", [
    ("r/a.png | PSNR: 25.1; SSIM: abc", r"bad\.log:2: SSIM is not a number: 'abc'"),
    ("r/a.png | PSNR: nan; SSIM: 0.5", r"bad\.log:2: PSNR is not finite: 'nan'"),
    ("r/a.png | PSNR 25.1; SSIM: 0.5", r"bad\.log:2: expected 'NAME: value' entries .* got 'PSNR 25\.1'"),
    ("r/a.png | PSNR: 25.1; PSNR: 25.2", r"bad\.log:2: column PSNR appears twice"),
    ("r/b.png | SSIM: 0.5; PSNR: 25.1", r"bad\.log:2: columns SSIM, PSNR differ from line 1's PSNR, SSIM"),
    ("r/a.png | PSNR: 25.1; SSIM: 0.5", r"bad\.log:2: image a\.png of folder 'r' logged twice \(first at line 1\)"),
])
def test_malformed_lines_name_file_and_line(bad_line, message):
    text = "r/a.png | PSNR: 25.0; SSIM: 0.4 | Runtime: 1 sec\n" + bad_line + "\n"
    with pytest.raises(IqaLogError, match=message):
        parse_iqa_log(text, "bad.log")


def test_malformed_average_blocks_and_empty_logs():
    head = "r/a.png | PSNR: 25.0; SSIM: 0.4\n===== Average Metrics for [r] =====\n"
    with pytest.raises(IqaLogError, match=r"x\.log:3: SSIM is not a number"):
        parse_iqa_log(head + "PSNR: 25.0; SSIM: - | FID: 1.0\n", "x.log")
    with pytest.raises(IqaLogError, match=r"x\.log:3: average columns PSNR differ from the per-image columns"):
        parse_iqa_log(head + "PSNR: 25.0 | FID: 1.0\n", "x.log")
    with pytest.raises(IqaLogError, match=r"x\.log:2: average block for folder 'r' has no values after it"):
        parse_iqa_log(head + "\n\n", "x.log")
    with pytest.raises(IqaLogError, match=r"x\.log:3: FID is not a number"):
        parse_iqa_log(head + "PSNR: 25.0; SSIM: 0.4 | FID: n/a\n", "x.log")
    twice = head + "PSNR: 25.0; SSIM: 0.4\n===== Average Metrics for [r] =====\nPSNR: 25.0; SSIM: 0.4\n"
    with pytest.raises(IqaLogError, match=r"x\.log:5: second average block for folder 'r' \(first at line 3\)"):
        parse_iqa_log(twice, "x.log")
    iso = "2024-10-23 17:28:54,191 - INFO - r/a.png | PSNR: 25.0; SSIM: 0.4\n"  # another logger's format
    with pytest.raises(IqaLogError, match=r"iso\.log:1: per-image line behind an unknown prefix "
                                          r"'2024-10-23 17:28:54,191 - INFO -'"):
        parse_iqa_log(iso, "iso.log")
    with pytest.raises(IqaLogError, match=r"empty\.log: no per-image lines"):
        parse_iqa_log("24-10-23 17:28:54.191 - INFO: ===== Configuration =====\n", "empty.log")


def test_read_iqa_log_names_the_file(tmp_path):
    path = tmp_path / "m.log"
    path.write_text(LOG.replace("0.735231", "0.7x"), encoding="utf-8")
    with pytest.raises(IqaLogError, match=r"m\.log:9: SSIM is not a number: '0\.7x'"):
        read_iqa_log(path)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(IqaLogError, match=r"m\.log: not a UTF-8 text log"):
        read_iqa_log(path)


def test_columns_map_to_registered_metrics():
    for column, (metric, _) in OSEDIFF_COLUMNS.items():
        assert metric in METRICS, column
    assert OSEDIFF_COLUMNS["MANIQA"][0] == "maniqa-pipal"  # test_metrics.py: create_metric('maniqa-pipal')


def test_pyiqa_psnr_adds_its_eps_to_the_mse():
    # 30 dB on [0, 1] data is MSE 1e-3; pyiqa divides by 1e-3 + 1e-8
    assert pyiqa_psnr_from_float_y(30.0) == pytest.approx(-10 * math.log10(1e-3 + 1e-8), abs=1e-12)
    assert 30.0 - pyiqa_psnr_from_float_y(30.0) == pytest.approx(10 * math.log10(1 + 1e-5), rel=1e-6)
    assert pyiqa_psnr_from_float_y(100.0) == pytest.approx(-10 * math.log10(1e-10 + 1e-8), abs=1e-9)
