from __future__ import annotations

import json
from pathlib import Path

import pytest

from resshift.runfolder.store import RowStore, write_json


def test_append_and_last_row_wins(tmp_path: Path) -> None:
    s = RowStore(tmp_path / "r.jsonl")
    s.append({"name": "a", "status": "failed"})
    s.append({"name": "b", "status": "ok", "v": 1.5})
    s.append({"name": "a", "status": "ok"})
    assert [r["name"] for r in s.rows()] == ["a", "b"]
    assert s.done() == {"a", "b"}
    assert len(list(s)) == 3


def test_partial_trailing_line_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    s = RowStore(path)
    s.append({"name": "a", "status": "ok"})
    with open(path, "a") as fh:  # a writer killed mid-line
        fh.write('{"name": "b", "sta')
    s2 = RowStore(path)
    assert [r["name"] for r in s2.rows()] == ["a"]
    s2.append({"name": "b", "status": "ok"})
    assert [json.loads(line)["name"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_file_with_only_a_partial_line_becomes_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"name": "x"')
    assert RowStore(path).rows() == []
    assert path.read_text() == ""


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"name": "a"}\nnot json\n{"name": "b"}\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2: corrupt row"):
        RowStore(path).rows()


def test_row_without_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="name"):
        RowStore(tmp_path / "r.jsonl").append({"status": "ok"})


def test_write_json_is_atomic(tmp_path: Path) -> None:
    p = write_json(tmp_path / "x" / "s.json", {"b": 1, "a": [1, 2]})
    assert json.loads(p.read_text()) == {"a": [1, 2], "b": 1}
    assert not list(p.parent.glob("*.part"))


def test_newest_row_wins_across_shard_files(tmp_path: Path) -> None:
    """A run sharded over two processes, then resumed as one: the one-process rows are newer, although
    ``sr-0-of-1`` sorts before ``sr-0-of-2``; the newest row of each image wins, whichever file holds it."""
    from resshift.runfolder import RunFolder

    folder = RunFolder(tmp_path)
    folder.row_store("sr", 0, 2).append({"name": "a", "status": "failed", "error": "unreadable"})
    folder.row_store("sr", 1, 2).append({"name": "b", "status": "ok"})
    folder.row_store("metrics", 0, 2).append({"name": "b", "status": "ok", "values": {"psnr": 30.0}})
    folder.row_store("sr", 0, 1).append({"name": "a", "status": "ok"})
    folder.row_store("metrics", 0, 1).append({"name": "b", "status": "ok", "values": {"psnr": 30.0, "ssim": 0.9}})
    assert [(r["name"], r["status"]) for r in folder.rows("sr")] == [("a", "ok"), ("b", "ok")]
    assert folder.done("sr") == {"a", "b"}
    assert folder.rows("metrics")[0]["values"] == {"psnr": 30.0, "ssim": 0.9}
    # and the other way round: a later failure in a file that sorts first is not hidden by an older ok row
    folder.row_store("sr", 1, 2).append({"name": "b", "status": "failed", "error": "SR output not finite"})
    assert folder.done("sr") == {"a"}


def test_rows_without_a_time_keep_file_order_and_lose_to_stamped_rows(tmp_path: Path) -> None:
    """Rows written before rows carried ``written_ns``: file-name then line order, older than any stamped row."""
    from resshift.runfolder import RunFolder

    folder = RunFolder(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    (records / "sr-0-of-1.jsonl").write_text('{"name": "a", "status": "ok", "v": 1}\n{"name": "c", "status": "ok"}\n')
    (records / "sr-0-of-2.jsonl").write_text('{"name": "a", "status": "ok", "v": 2}\n')
    assert folder.rows("sr")[0]["v"] == 2
    folder.row_store("sr", 0, 1).append({"name": "c", "status": "failed", "error": "x"})
    assert folder.done("sr") == {"a"}


def test_a_reader_never_cuts_a_row_in_progress(tmp_path: Path) -> None:
    """A report reading a live run's rows sees a partial last line (a row being written): it skips it and leaves
    the file alone; only a writer opening the store cuts it."""
    from resshift.runfolder import RunFolder

    folder = RunFolder(tmp_path)
    folder.row_store("sr", 0, 1).append({"name": "a", "status": "ok"})
    path = folder.records_file("sr", 0, 1)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"name": "b", "sta')
    before = path.read_bytes()
    assert [r["name"] for r in folder.rows("sr")] == ["a"] and folder.done("sr") == {"a"}
    assert path.read_bytes() == before
    folder.row_store("sr", 0, 1)  # a writer repairs
    assert path.read_bytes() == before[: before.rindex(b"\n") + 1]
