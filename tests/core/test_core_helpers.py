"""style_tune.core's one-of-each helpers: pass-through arguments, percentiles, atomic single files."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from style_tune.core import io, stats
from style_tune.core.cli import split_passthrough
from style_tune.core.io import json_objects, write_atomically
from style_tune.core.stats import percentile


@pytest.mark.parametrize(("argv", "expected"), [
    (["cfg.py", "--work-dir", "w"], (["cfg.py", "--work-dir", "w"], [])),
    (["cfg.py", "--", "--cfg-options", "a=1"], (["cfg.py"], ["--cfg-options", "a=1"])),
    (["--", "x", "--", "y"], ([], ["x", "--", "y"])),  # only the first -- splits
    (["cfg.py", "--"], (["cfg.py"], [])),
])
def test_split_passthrough(argv: list[str], expected: tuple[list[str], list[str]]) -> None:
    assert split_passthrough(argv) == expected


def test_percentile_linear_and_nearest_rank() -> None:
    values = [4, 1, 3, 2]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 50, nearest_rank=True) == 2
    assert percentile(range(1, 11), 90, nearest_rank=True) == 9
    assert percentile(range(1, 11), 90) == pytest.approx(9.1)
    assert percentile([7], 90, nearest_rank=True) == 7
    assert percentile([], 90) == 0.0


def test_write_atomically_text_and_bytes(tmp_path: Path) -> None:
    text, blob = tmp_path / "a" / "t.md", tmp_path / "b.png"
    write_atomically(text, "一\r\n二\n")
    write_atomically(blob, b"\x00\x01")
    assert text.read_bytes() == "一\r\n二\n".encode()
    assert blob.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert text.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.png", "t.md"]  # no temporaries left


def test_write_atomically_draws_again_when_a_temporary_has_its_name(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a dead process with this pid drew the same name and left its temporary: the writer draws again
    tokens = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(io.secrets, "token_hex", lambda n: next(tokens))
    target = tmp_path / "out.json"
    (tmp_path / f".out.json.{os.getpid()}-aaaaaaaa.tmp").write_text("left by a dead process")
    write_atomically(target, "new")
    assert target.read_text() == "new"
    assert next(tokens, None) is None  # the first name was taken, the second used


def test_json_objects_numbers_lines_as_an_editor_does() -> None:
    text = '{"a": 1}\n\n  \n{"b": "x\u2028y"}\r\n{bad\n[1, 2]\n"s"\n{"c": 3}'
    objects, problems = json_objects(Path("r.jsonl"), text)
    assert objects == [(1, {"a": 1}), (4, {"b": "x\u2028y"}), (8, {"c": 3})]
    assert problems == [
        "r.jsonl:5: json: not a JSON object (Expecting property name enclosed in double quotes at column 2)",
        "r.jsonl:6: json: a list, not a JSON object",
        "r.jsonl:7: json: a str, not a JSON object",
    ]


def test_a_file_write_names_its_step_and_ctrl_c_leaves_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    """The sweep's line names the step (default: the program's name); Ctrl-C just before the temporary is
    made (its name known, nothing created yet) passes on as KeyboardInterrupt, nothing left."""
    target = tmp_path / "t.md"
    (tmp_path / ".t.md.4242-ab12cd34.tmp").write_text("half")
    monkeypatch.setattr(sys, "argv", ["/somewhere/split.py", "--seed"])
    io.write_files_atomically({target: "x"})
    assert capsys.readouterr().err == f"split: removed what an interrupted run left beside {target}: " \
                                      ".t.md.4242-ab12cd34.tmp\n"
    real_open = os.open

    def ctrl_c_before_the_temporary(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise KeyboardInterrupt
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(io.os, "open", ctrl_c_before_the_temporary)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "u.md", "y", step="t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.md"]


def test_temporaries_are_named_as_the_sweep_finds_them(tmp_path: Path) -> None:
    directory = io._temporary(tmp_path / "out", directory=True)
    file = io._temporary(tmp_path / "out", directory=False)
    assert re.fullmatch(rf"\.out\.tmp-{os.getpid()}-[0-9a-f]{{8}}", directory.name)
    assert re.fullmatch(rf"\.out\.{os.getpid()}-[0-9a-f]{{8}}\.tmp", file.name)
    assert io._temporary_pattern("out").fullmatch(directory.name).group(1) == str(os.getpid())


def test_a_share_is_shown_with_its_interval_or_a_dash() -> None:
    assert stats.percent(0.425, (0.3, 0.55)) == "42% [30%, 55%]"
    assert stats.percent(None, None) == stats.percent(0.5, None) == stats.percent(None, (0, 1)) == "—"
    assert stats.wilson_interval(3, 0) is None
