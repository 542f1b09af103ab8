"""Three models by name in one style evaluation, and the pairwise judge over every pair of them (COMPARE=).

`make eval-style COMPARE="base=DIR other=DIR api=URL#style-tune"` on a few held-out prompts of a label
split: the tiny model (seed 0) and one with other random weights (seed 1) by directory, loaded by
OpenCompass with transformers, and `make serve` on the first by URL, asked through OpenCompass's
OpenAISDK (behind a logging proxy: the requests it saw are the prompts). The report has a column per
model. `make judge-pairs` with the CPU server as the judge (junk: every answer unparsable, counted apart)
asks every pair of the three on every prompt in both orders: the judge prompts that reached the real
server (through tests/eval/fault_proxy.py, logging only, no fault) are exactly the filled template with
each pair's replies in the record's order and swapped. A COMPARE that names a server that is down, a model
it does not list, or a directory without a model stops before OpenCompass with one line.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import chat_cases
import pytest
from fault_proxy import FaultProxy

from style_tune.deploy.serving import SERVED_MODEL_NAME
from style_tune.eval.llm_judge import NO_STYLE
from style_tune.eval.pairwise_judge import DEFAULT_PROMPT, load_prompt
from style_tune.eval.verdicts import shown_order

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMIT = 4
SEED = 42  # the Makefile's default SEED: the first order of each pair


def make(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS", "OPENAI_API_KEY"))}
    return subprocess.run(["make", "-s", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}\n"
                    f"{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def three(fresh_tiny_model_dir: Path, cpu_server, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The three-model evaluation: its run folder, the split, the API proxy's log, the models' dirs."""
    tmp = tmp_path_factory.mktemp("compare")
    try:
        other = chat_cases.tiny_model_path(tmp / "seed1", seed=1)
    except RuntimeError as err:
        pytest.fail(str(err))
    split = tmp / "label"
    ok(make("split", "MODE=label", f"SPLIT_DIR={split}"))
    with FaultProxy(cpu_server.base_url) as api:
        compare = f"base={fresh_tiny_model_dir} other={other} api={api.base_url}#{SERVED_MODEL_NAME}"
        proc = ok(make("eval-style", f"COMPARE={compare}", "MODE=label", f"SPLIT_DIR={split}",
                       f"STYLE_DIR={tmp / 'out'}", f"TRAIN_WORK_DIR={tmp / 'none'}", f"EVAL_LIMIT={LIMIT}",
                       "EVAL_MAX_OUT_LEN=12", "EVAL_DEVICE=cpu"))
        asked = list(api.log)
    return {"run_dir": (tmp / "out" / "latest").resolve(), "report": tmp / "out" / "report.md",
            "api_log": asked, "api_url": api.base_url, "stdout": proc.stdout}


def predictions(run_dir: Path, model: str) -> list[dict]:
    (path,) = (run_dir / "predictions" / model).glob("*.json")
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [rows[key] for key in sorted(rows, key=int)]


def test_one_run_holds_every_models_replies_to_the_same_prompts(three: dict) -> None:
    run_dir = three["run_dir"]
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == ["api", "base", "other"]
    rows = {m: predictions(run_dir, m) for m in ("base", "other", "api")}
    prompts = {m: [next(part["prompt"] for part in row["origin_prompt"] if part["role"] == "HUMAN")
                   for row in model_rows] for m, model_rows in rows.items()}
    assert len(prompts["base"]) == LIMIT and prompts["other"] == prompts["api"] == prompts["base"]
    # the API model's replies came from the server: one request per prompt, each with the prompt
    assert sorted(entry["user"] for entry in three["api_log"]) == sorted(prompts["base"])
    assert all(isinstance(row["prediction"], str) for row in rows["api"])
    report = three["report"].read_text(encoding="utf-8")
    assert report.startswith("# Style evaluation: base vs other vs api\n")
    assert f"- api: `{SERVED_MODEL_NAME} at {three['api_url']}`" in report
    assert "| metric | base | other | api | references | what it means (range) |" in report
    assert "| # | prompt | base | other | api | reference |" in report


def test_the_judge_asks_every_pair_on_every_prompt_in_both_orders(three: dict, cpu_server) -> None:
    run_dir = three["run_dir"]
    with FaultProxy(cpu_server.base_url) as judge:
        ok(make("judge-pairs", f"STYLE_DIR={run_dir.parent}", f"JUDGE_API={judge.base_url}",
                f"JUDGE_MODEL={SERVED_MODEL_NAME}", "JUDGE_MAX_TOKENS=8", "JUDGE_RETRIES=0"))
        asked = Counter(entry["user"] for entry in judge.log)
    records = [json.loads(line) for line in
               (run_dir / "pairwise_verdicts.jsonl").read_text(encoding="utf-8").splitlines()]
    names = ["base", "api", "other"]  # the run's models, base first (llm_judge.run_items)
    prompts = {r["prompt"] for r in records}
    assert len(prompts) == LIMIT and len(records) == 3 * LIMIT
    pairs = Counter((frozenset(r["endpoints"][s]["name"] for s in ("A", "B")), r["prompt"]) for r in records)
    assert pairs == Counter({(frozenset(pair), p): 1 for pair in itertools.combinations(names, 2)
                             for p in prompts})
    system, template, descriptions = load_prompt(DEFAULT_PROMPT)
    expected: Counter = Counter()
    for r in records:
        a, b = (r["endpoints"][side]["name"] for side in ("A", "B"))
        pair = tuple(sorted((a, b), key=names.index))
        assert (a, b) == shown_order(SEED, r["prompt"], r["style"], names=pair)  # as the web page draws it
        assert r["verdict"] is None and r["unparsable"] and len(r["answers"]) == 2  # the junk judge
        for first, second in (("A", "B"), ("B", "A")):
            expected[template.substitute(style=r["style"] or NO_STYLE, user=r["prompt"],
                                         reply_a=r["replies"][first], reply_b=r["replies"][second],
                                         style_description=descriptions[r["style"] or NO_STYLE])] += 1
    assert asked == expected and sum(asked.values()) == 2 * 3 * LIMIT
    counted = ok(make("verdicts", f"VERDICTS={run_dir / 'pairwise_verdicts.jsonl'}")).stdout
    assert counted.count("### ") == 3  # make verdicts: each pair counted apart


def test_a_compare_that_names_nothing_usable_stops_before_opencompass(fresh_tiny_model_dir: Path,
                                                                      cpu_server, tmp_path: Path) -> None:
    split = tmp_path / "split"  # what the check looks for first: present
    split.mkdir()
    for name in ("train", "test"):
        (split / f"{name}.json").write_text("[]", encoding="utf-8")
    for compare, problem in (
            (f"base={fresh_tiny_model_dir} down=http://127.0.0.1:9/v1",
             "down: http://127.0.0.1:9/v1 does not answer GET /models"),
            (f"base={fresh_tiny_model_dir} api={cpu_server.base_url}#gpt-x",
             f"api: {cpu_server.base_url} lists {SERVED_MODEL_NAME}, not 'gpt-x'"),
            (f"base={fresh_tiny_model_dir} gone={tmp_path}", f"no model in {tmp_path} (gone)"),
            (f"base={fresh_tiny_model_dir}", "names 1 model(s)")):
        proc = make("eval-style", f"COMPARE={compare}", f"SPLIT_DIR={split}", f"STYLE_DIR={tmp_path / 'out'}",
                    timeout=300)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("eval-style: ")]
        assert proc.returncode == 2 and len(errors) == 1 and problem in errors[0], proc.stderr
        assert "opencompass.cli.main" not in proc.stdout
