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
