"""The rating session's pieces, in process (no server, no browser): which prompts a session holds, the
order drawn per prompt, the resume point read from the verdict file, and what the page config names in
blind and non-blind mode (stand-in endpoints: only their names, URLs and model names are read)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from style_tune.core.prompts import STYLE_SYSTEMS, system_text
from style_tune.eval.verdicts import record, shown_order
from style_tune.webui.app import build_page, judged, session_items

ENDPOINTS = {"base": SimpleNamespace(model="base-model-x", base_url="http://127.0.0.1:1111/v1"),
             "tuned": SimpleNamespace(model="tuned-model-y", base_url="http://127.0.0.1:2222/v1")}


def split_file(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / "test.json"
    path.write_text(json.dumps([{"conversation": [{"system": system, "input": prompt, "output": "."}]}
                                for prompt, system in rows], ensure_ascii=False), encoding="utf-8")
    return path


def test_a_session_takes_n_prompts_per_style_in_turns(tmp_path: Path) -> None:
    rows = [(f"p{i}", STYLE_SYSTEMS[style]) for i in range(4) for style in ("毒舌", "温柔")]
    items = session_items(split_file(tmp_path, rows), "controllable", 3)
    assert items == [{"prompt": f"p{i}", "style": style} for i in range(3) for style in ("温柔", "毒舌")]
    label = session_items(split_file(tmp_path, [("q1", system_text("label")), ("q1", system_text("label")),
                                                ("q2", system_text("label"))]), "label", 5)
    assert label == [{"prompt": "q1", "style": None}, {"prompt": "q2", "style": None}]
    assert session_items(tmp_path / "missing.json", "label", 5) == []


def test_the_order_is_drawn_per_prompt_and_the_same_on_a_reload() -> None:
    items = [{"prompt": f"p{i}", "style": "温柔"} for i in range(200)]
    orders = [shown_order(7, item["prompt"], item["style"]) for item in items]
    assert orders == [shown_order(7, item["prompt"], item["style"]) for item in items]  # a reload: the same
    tuned_first = sum(order == ("tuned", "base") for order in orders)
    assert 70 < tuned_first < 130 and set(orders) == {("tuned", "base"), ("base", "tuned")}
    assert orders != [shown_order(8, item["prompt"], item["style"]) for item in items]  # another seed


def test_the_verdict_file_is_the_session_state(tmp_path: Path) -> None:
    verdicts = tmp_path / "v.jsonl"

    def line(prompt: str, seed: int, rater: str | None, judge: str | None = None) -> dict:
        return record(verdict="A", prompt=prompt, style="温柔", system=STYLE_SYSTEMS["温柔"],
                      replies={"A": "a", "B": "b"}, endpoints={"A": {"name": "base"}, "B": {"name": "tuned"}},
                      settings={}, seed=seed, rater=rater, judge=judge)

    lines = [line("p1", 7, None), line("p2", 7, "ann"), line("p3", 8, None),
             line("p4", 7, None, judge="qwen-max")]  # the pairwise judge's verdict is no rater's
    verdicts.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
                        + "not json\n" + json.dumps({"seed": 7, "prompt": "p5", "style": "温柔"}) + "\n",
                        encoding="utf-8")
    assert judged(verdicts, 7, "") == {("p1", "温柔")}
    assert judged(verdicts, 7, "ann") == {("p2", "温柔")}
    assert judged(verdicts, 8, "") == {("p3", "温柔")}
    assert judged(tmp_path / "none.jsonl", 7, "") == set()


def test_blind_config_names_no_endpoint_and_demo_mode_does(tmp_path: Path) -> None:
    items = [{"prompt": "p1", "style": "温柔"}]
    for blind in (True, False):
        page = build_page(ENDPOINTS, "controllable", items, tmp_path / "v.jsonl", blind=blind, seed=0)
        config = json.dumps(page.get_config_file(), ensure_ascii=False, default=repr)
        secrets = ("127.0.0.1:1111", "127.0.0.1:2222", "base-model-x", "tuned-model-y")
        if blind:
            assert not [s for s in secrets if s in config] and "tuned" not in config
        else:
            assert all(s in config for s in secrets)
