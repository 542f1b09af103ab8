"""`make leaderboard` and `make leaderboard-readme` (style_tune/eval/leaderboard.py).

The chain runs once, on tiny models in the label format (the session's tiny model as the base and the two
stand-ins for merged models of tests/eval/test_retention.py, by NAME=DIR), a few held-out prompts and the
FewCLUE fixture: eval-style of the three, the metrics judge over every pair, make eval-retention, the
inputs copied, a README block drawn. Random-weight models write noise, so every pair is "both bad" and
the block must say that no ranking exists rather than print one. The README block with ratings is
checked on verdicts simulated from known strengths (tests/verdict_sim.py) against what `make verdicts`
prints for them; and the committed leaderboard (docs/leaderboard/) against README.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import verdict_sim
from test_compare_eval import make, ok
from test_retention import tuned  # noqa: F401  (the fixture: two stand-ins for merged models)

from style_tune.eval.leaderboard import ABOUT, BEGIN, END, FIGURE, FULL, RETENTION, VERDICTS

REPO_ROOT = Path(__file__).resolve().parents[2]
FEWCLUE = REPO_ROOT / "tests" / "eval" / "fixtures" / "fewclue"
PROMPTS = 3
SKELETON = f"# A README\n\nBefore.\n\n{BEGIN}\nold text\n{END}\n\nAfter.\n"


def block(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8")
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)]


@pytest.fixture(scope="module")
def board(tiny_model_dir: Path, tuned: dict[str, Path],  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("leaderboard")
    split = tmp / "label"
    ok(make("split", "MODE=label", f"SPLIT_DIR={split}"))
    readme = tmp / "README.md"
    readme.write_text(SKELETON, encoding="utf-8")
    models = {"base": tiny_model_dir, "sft": tuned["ctl"], "dpo": tuned["lab"]}
    start = time.monotonic()
    proc = ok(make("leaderboard", "MODE=label",
                   "LEADERBOARD_MODELS=" + " ".join(f"{k}={v}" for k, v in models.items()),
                   f"LEADERBOARD_SPLIT={split}", f"LEADERBOARD_DIR={tmp / 'board'}",
                   f"LEADERBOARD_RUNS={tmp / 'runs'}", f"LEADERBOARD_README={readme}",
                   f"EVAL_LIMIT={PROMPTS}", "EVAL_MAX_OUT_LEN=8", "LEADERBOARD_MAX_OUT_LEN=8",
                   "RANKING_ROUNDS=50", timeout=1800))
    print(f"make leaderboard: {time.monotonic() - start:.0f} s")
    return {"dir": tmp / "board", "runs": tmp / "runs", "readme": readme, "models": models, "tmp": tmp,
            "stdout": proc.stdout}


def test_the_chain_judges_every_pair_and_keeps_what_the_readme_is_made_of(board: dict) -> None:
    folder = board["dir"]
    records = [json.loads(line) for line in (folder / VERDICTS).read_text(encoding="utf-8").splitlines()]
    # every pair of the three on every prompt, by the metrics judge, both orders agreeing
    pairs = {(frozenset(r["endpoints"][s]["name"] for s in "AB"), r["prompt"]) for r in records}
    assert len(records) == len(pairs) == 3 * PROMPTS
    assert {r["judge"] for r in records} == {"style-metrics (deterministic)"}
    assert all(r["orders_agree"] for r in records)
    # the copies are the runs' own files
    style_run = (board["runs"] / "style" / "latest").resolve()
    assert (folder / VERDICTS).read_bytes() == (style_run / "pairwise_verdicts_metrics.jsonl").read_bytes()
    assert (folder / RETENTION).read_bytes() == (board["runs"] / "retention" / "report.json").read_bytes()
    about = json.loads((folder / ABOUT).read_text(encoding="utf-8"))
    assert about["style_run"]["models"] == {k: str(v) for k, v in board["models"].items()}
    assert about["style_run"]["limit"] == PROMPTS and about["style_run"]["mode"] == "label"
    assert about["retention_run"]["fewclue"] == "tests/eval/fixtures/fewclue"
    assert about["command"].startswith("make leaderboard ") and "LEADERBOARD_MODELS=" in about["command"]
    assert about["wall_time_s"] > 0


def test_noise_gets_no_ranking_and_the_retention_table_is_the_reports(board: dict) -> None:
    text = block(board["readme"])
    records = [json.loads(line)
               for line in (board["dir"] / VERDICTS).read_text(encoding="utf-8").splitlines()]
    assert all(r["verdict"] == "both bad" for r in records)  # random weights: nothing counts for style
    assert "No ranking (judge style-metrics (deterministic): no three models are connected" in text
    assert "![" not in text and not (board["dir"] / FIGURE).exists()
    summary = json.loads((board["dir"] / RETENTION).read_text(encoding="utf-8"))
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    for name in ("base", "sft", "dpo"):
        mine = [r for r in summary["rows"] if r["name"] == name]
        cells = rows[name].strip("| ").split(" | ")
        # one entry per model (label format; the base: no system text): one accuracy per task
        assert cells[-3:-1] == [f"{r['accuracy']:.1f}" for r in mine]
        assert cells[-1] == f"{sum(r['unparseable'] for r in mine)} of {sum(r['items'] for r in mine)}"
    items = {r["task"]: r["items"] for r in summary["rows"]}
    assert f"bustm {items['bustm']} items, ocnli_fc {items['ocnli_fc']} items" in text
    assert "verdicts: too few items" in text
    readme = board["readme"].read_text(encoding="utf-8")
    assert readme.startswith("# A README\n\nBefore.\n\n") and readme.endswith(f"{END}\n\nAfter.\n")
    # drawn again from the kept data alone: the same block, and --check agrees
    before = readme
    ok(make("leaderboard-readme", f"LEADERBOARD_DIR={board['dir']}", f"LEADERBOARD_README={board['readme']}",
            "RANKING_ROUNDS=50"))
    assert board["readme"].read_text(encoding="utf-8") == before


def test_the_ranking_in_the_readme_is_what_make_verdicts_prints(board: dict) -> None:
    """Verdicts with known strengths in place of the noise's: the block's ratings are make verdicts' own."""
    folder = board["tmp"] / "simulated"
    folder.mkdir()
    for name in (RETENTION, ABOUT):
        (folder / name).write_bytes((board["dir"] / name).read_bytes())
    strengths = {"base": 1000.0, "sft": 1150.0, "dpo": 1300.0}
    records = verdict_sim.simulate(strengths, 30, 3, tie=0.2, both_bad=0.1,
                                   judge="style-metrics (deterministic)")
    (folder / VERDICTS).write_text(verdict_sim.lines(records), encoding="utf-8")
    readme = board["tmp"] / "README.simulated.md"
    readme.write_text(SKELETON, encoding="utf-8")
    ok(make("leaderboard-readme", f"LEADERBOARD_DIR={folder}", f"LEADERBOARD_README={readme}",
            "RANKING_ROUNDS=50"))
    text = block(readme)
    printed = ok(make("verdicts", f"VERDICTS={folder / VERDICTS}", "RANKING_ROUNDS=50")).stdout
    for model in strengths:
        rating = re.search(rf"^\| (\d|—) \| {model} \| ([^|]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) ",
                           printed, re.M)
        assert rating, printed
        rank, elo, _, wins, losses, ties, both_bad = rating.groups()
        both_bad = both_bad.split()[0]
        assert f"| {model} | {rank} | {elo.strip()} | {wins} / {losses} / {ties} / {both_bad} |" in text
    order = [line.split(" | ")[0].strip("| ") for line in text.splitlines() if line.startswith("| ")][1:]
    assert order[:3] == ["dpo", "sft", "base"]  # best first
    assert "**judge style-metrics (deterministic)**, 90 verdicts on" in text
    assert (folder / FIGURE).read_bytes().startswith(b"\x89PNG") and f"]({folder.name}/{FIGURE})" in text
    assert "## Ranking (Bradley–Terry)" in (folder / FULL).read_text(encoding="utf-8")


def test_the_committed_leaderboard_is_what_readme_shows() -> None:
    """README's block is what docs/leaderboard/ gives (drawn by make leaderboard-readme, not by hand)."""
    proc = subprocess.run([sys.executable, "-m", "style_tune.eval.leaderboard", "readme", "--dir",
                           "docs/leaderboard", "--check"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (REPO_ROOT / "docs" / "leaderboard" / FIGURE).is_file()


def test_the_committed_reports_name_no_machine_path(tmp_path: Path) -> None:
    """The runs record absolute paths; what is committed names the checkout's own relative to it, so no
    file of docs/leaderboard/ says on which machine (or in which folder) it was made."""
    from style_tune.eval.leaderboard import in_checkout

    report = tmp_path / "report.md"
    report.write_text(f"Base: `{REPO_ROOT}/models/base`, elsewhere: `/data/m`\n", encoding="utf-8")
    assert in_checkout(report) == "Base: `models/base`, elsewhere: `/data/m`\n"
    for path in (REPO_ROOT / "docs" / "leaderboard").glob("*.*"):
        if path.suffix in (".json", ".jsonl", ".md"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"[`\"'](/[\w.-]+)+/(models|outputs)/", text), path
