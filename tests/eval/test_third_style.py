"""Styles are defined once (style_data/styles.json): a third style, 傲娇, added in a temporary styles file
(``STYLE_TUNE_STYLES``), goes through split -> training rows -> chat templates -> gen-data's rules ->
scoring with no change to the code.

Its rows: tests/eval/fixtures/tsundere_rows.csv (24 hand-written replies to prompts of the shipped data),
added to the shipped CSV. Each step runs as a subprocess, as a user runs it, so it reads the file anew.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from style_tune.core.styles import STYLES_FILE

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tsundere_rows.csv"
TSUNDERE = {
    "label": "傲娇",
    "slug": "tsundere",
    "system": "你是一个傲娇的聊天伙伴。请用傲娇的风格回复用户：嘴上嫌弃、心里关心，口是心非，话题保持不变。",
    "generation": {
        "prompt": "你在为一个对话风格数据集写回复。用户会说一句日常的话，请用“傲娇”的风格回一句：嘴上嫌弃，"
                  "心里关心，口是心非。一到两句话，15到60个汉字；只写回复本身。",
        "examples": [{"user": "今天又加班到十点，腿都站麻了",
                      "assistant": "哼，谁让你不早点把活干完的……才、才不是心疼你，赶紧回去泡脚睡觉啦！"}],
        "temperature": 0.8,
    },
    "validation": {"forbidden": ["傻逼"], "required_any": ["哼", "才不是", "笨"]},
}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_a_third_style_goes_through_every_step_without_code_change(tmp_path: Path) -> None:
    data = json.loads(STYLES_FILE.read_text(encoding="utf-8"))
    data["styles"].append(TSUNDERE)
    styles = tmp_path / "styles.json"
    styles.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "STYLE_TUNE_STYLES": str(styles)}
    shipped = (ROOT / "style_data" / "style_chat_data.csv").read_text(encoding="utf-8-sig")
    rows = FIXTURE.read_text(encoding="utf-8").split("\n", 1)[1]
    table = tmp_path / "three.csv"
    table.write_text(shipped.rstrip("\n") + "\n" + rows, encoding="utf-8")

    # split -> training rows: the third style's system text, as for the shipped two
    run("-m", "style_tune.data.split", str(table), "--out-dir", str(tmp_path / "data" / "controllable"),
        "--mode", "controllable", env=env)
    out = tmp_path / "data" / "controllable"
    splits = {name: json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
              for name in ("train", "val", "test")}
    turns = [row["conversation"][0] for rows in splits.values() for row in rows]
    tsundere = [turn for turn in turns if turn["system"] == TSUNDERE["system"]]
    assert len(tsundere) == 24 and all("傲娇" not in turn["output"][:2] for turn in tsundere)
    assert any(row["conversation"][0]["system"] == TSUNDERE["system"] for row in splits["train"])

    # chat templates: one more file, with the style's system text as lmdeploy's meta_instruction
    run("-m", "style_tune.data.chat_templates", "--root", str(tmp_path), env=env)
    template = json.loads((tmp_path / "style_data" / "chat_template_controllable_tsundere.json").read_text())
    assert template["meta_instruction"] == TSUNDERE["system"]

    # `make chat STYLE=tsundere` resolves the slug and asks for that style's template (in the repository's
    # style_data/, which this test leaves alone: `make chat-templates` would write it there)
    proc = subprocess.run([sys.executable, "-m", "style_tune.deploy.chat", "chat", str(tmp_path), "--mode",
                           "controllable", "--style", "tsundere", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "style_data/chat_template_controllable_tsundere.json is missing" in proc.stderr, proc.stderr

    # gen-data's rules: the style's own markers apply
    check = ("from style_tune.core.styles import load_styles; "
             "from style_tune.data.gen.validate import Answer, validate; s = load_styles(); print(validate(["
             "Answer('好累', '傲娇', '今天累坏了吧，早点休息，明天加油哦'), "
             "Answer('好累', '傲娇', '哼，累了就早点睡啊笨蛋，才不是担心你呢。')], s))")
    assert run("-c", check, env=env).stdout.strip() == "[['no marker: none of 哼, 才不是, 笨'], []]"

    # scoring: the judge learns three styles; the third style has its own metrics
    test_tsundere = [turn for row in splits["test"] for turn in row["conversation"]
                     if turn["system"] == TSUNDERE["system"]]
    assert test_tsundere, "the test split has no 傲娇 prompt"
    replies = tmp_path / "replies.jsonl"
    lines = [json.dumps({"user": t["input"], "style": "tsundere", "reply": t["output"]}, ensure_ascii=False)
             for t in test_tsundere]
    replies.write_text("\n".join(lines) + "\n", encoding="utf-8")
    scores = tmp_path / "scores.json"
    run("-m", "style_tune.eval.score_replies", str(replies), "--data-dir", str(tmp_path / "data"),
        "--out", str(scores), env=env)
    metrics = json.loads(scores.read_text(encoding="utf-8"))
    metrics = metrics.get("metrics", metrics)
    assert {"style_accuracy_tsundere", "judged_tsundere"} <= set(metrics)
    print(f"third style: {len(test_tsundere)} held-out 傲娇 references, style_accuracy_tsundere "
          f"{metrics['style_accuracy_tsundere']:.1f}")
    assert metrics["style_accuracy_tsundere"] > 50, metrics  # held-out 傲娇 references read as 傲娇
