"""The evaluation targets end to end on the CPU, through the Makefile (offline variables, the eval env):

- ``make eval-style``: OpenCompass runs the tiny base model and the demo's tuned model on held-out
  prompts, scores them (style_tune/eval/evaluator.py) and ``make report`` writes the report. The tuned
  model must beat the base on the style numbers: the demo taught it the reply format.
- ``make eval-select``: the article's model-selection config on small FewCLUE-format fixture files
  (tests/eval/fixtures/fewclue/data/FewCLUE) with both candidates' stand-ins, the tiny Qwen2.5 and
  the tiny InternLM2 (its remote modeling code, `make tiny-internlm`): the summary has the article's rows.

Models: the test always builds its own quick pair in a temporary directory by running ``make demo``
itself (split, train, convert, merge, then the demo's report), with small settings: the session's tiny
random-weight model as DEMO_BASE (it exists, so `make demo-base` builds nothing), DEMO_ITERS training
iterations, and the split, work dir and merged model in the temporary directory (the checkout is left
as it was: checked). Never the models of a `make demo` run by hand: those learn the styles (a measured
result, not something CI asserts) and a leftover in models/ would make the outcome depend on the
checkout's history.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import chat_cases
import pytest
from verdict_sim import STRENGTHS, lines, simulate

from style_tune.core.prompts import render_chatml
from style_tune.deploy.serving import SERVED_MODEL_NAME
from style_tune.eval.style_metrics import METRICS

REPO_ROOT = Path(__file__).resolve().parents[2]



FEWCLUE = REPO_ROOT / "tests" / "eval" / "fixtures" / "fewclue"
DEMO_ITERS = 50  # the demo's fine-tune learns the label line by then
#: what `make demo` must leave untouched in the checkout when its paths are given
CHECKOUT_OUTPUTS = ("data", "models", "work_dirs")


def make(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a make target in the repository; fail the test with its output when it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    proc = subprocess.run(["make", "-s", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"make {' '.join(args)} exited {proc.returncode}:\n"
                    f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def checkout_outputs() -> dict[str, int]:
    """Every path under the checkout's generated folders, with its modification time."""
    return {str(p.relative_to(REPO_ROOT)): p.stat().st_mtime_ns
            for name in CHECKOUT_OUTPUTS for p in [REPO_ROOT / name, *(REPO_ROOT / name).rglob("*")]
            if p.exists()}


@pytest.fixture(scope="module")
def demo_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`make demo` (label mode) on the session's tiny model, every output in a temporary directory:
    the base, the tuned merge, their split and work dir, and what the demo printed."""
    root = tmp_path_factory.mktemp("quick_demo")
    built = {"base": tiny_model_dir, "tuned": root / "merged", "split": root / "label",
             "work_dir": root / "work"}
    before = checkout_outputs()
    proc = make("demo", "MODE=label", f"DEMO_BASE={built['base']}", f"DEMO_ITERS={DEMO_ITERS}",
                f"SPLIT_DIR={built['split']}", f"DEMO_WORK_DIR={built['work_dir']}",
                f"DEMO_MERGED={built['tuned']}", timeout=1800)
    assert checkout_outputs() == before, "make demo wrote into the checkout despite its path variables"
    return {**built, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def models(demo_run: dict) -> dict[str, Path]:
    """The base (the session's tiny model) and its quickly tuned merge, their split and work dir."""
    return {key: value for key, value in demo_run.items() if key != "stdout"}


def test_demo_runs_end_to_end_and_reports_its_loss_and_artefacts(demo_run: dict) -> None:
    """`make demo`'s last step prints the training loss (first and last logged iteration, as mmengine
    logged them), the share of label lines before and after, sample replies and every artefact's path."""
    lines = demo_run["stdout"].splitlines()
    work_dir, split = demo_run["work_dir"], demo_run["split"]
    assert (work_dir / f"iter_{DEMO_ITERS}.pth").is_file() and (work_dir / "adapter").is_dir()
    assert (demo_run["tuned"] / "config.json").is_file()
    logged = [json.loads(line) for scalars in work_dir.glob("*/vis_data/scalars.json")
              for line in scalars.read_text(encoding="utf-8").splitlines()]
    losses = [(record["iter"], record["loss"]) for record in logged if "loss" in record]
    (i0, l0), (i1, l1) = losses[0], losses[-1]
    assert i1 == DEMO_ITERS and l1 < l0
    assert f"training loss: {l0:.3f} at iter {i0} -> {l1:.3f} at iter {i1}" in lines
    prompts = {row["conversation"][0]["input"]
               for row in json.loads((split / "test.json").read_text(encoding="utf-8"))}
    share = next(line for line in lines if line.startswith("replies that begin with a style label"))
    head, _, tail = share.partition(f", {len(prompts)} held-out prompts: base 0% -> tuned ")
    assert head == "replies that begin with a style label (温柔/毒舌)", share
    assert int(tail.split("%")[0]) >= 90, share  # the tiny random model learns the label line
    assert sum(line.startswith("user:      ") for line in lines) == 6  # --show's default
    artefacts = [f"stand-in base:     {demo_run['base']}",
                 f"training run:      {work_dir} (config, logs, iter_*.pth checkpoints)",
                 f"training curves:   {work_dir / 'curves'} (loss, learning rate, ... by iteration: PNGs, "
                 "curves.csv)",
                 f"LoRA adapter:      {work_dir / 'adapter'}", f"merged model:      {demo_run['tuned']}",
                 f"data splits:       {split}"]
    assert [line for line in lines if line in artefacts] == artefacts
    assert any(line.startswith("demo wall time:") and line.endswith(" s") for line in lines)
    # `make train` in the demo drew the curves: the CSV holds the logged losses, the figures are there
    with (work_dir / "curves" / "curves.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(int(row["iter"]), float(row["loss"])) for row in rows if row["loss"]] == losses
    assert {"loss.png", "lr.png", "grad_norm.png"} <= {p.name for p in (work_dir / "curves").iterdir()}
    # the report names every figure, and shows the style score at each save with the checkpoint kept (or why
    # none), as the record has them
    pngs = {p.name for p in (work_dir / "curves").glob("*.png")}
    named = next(line for line in lines if line.startswith(" " * 19 + "figures: "))
    assert set(named.split("figures: ")[1].split(", ")) == pngs and "style_scores.png" in pngs
    record_file = work_dir / "style_scores.jsonl"
    record = [json.loads(line) for line in record_file.read_text(encoding="utf-8").splitlines()]
    at = lines.index(f"validation style score at each save ({work_dir / 'style_scores.jsonl'}):")
    assert lines[at + 1].split() == ["iteration", "style_accuracy", "style_margin", "sane_rate"]
    scores = record[0]["metrics"]
    assert lines[at + 2].split()[:4] == [str(DEMO_ITERS), *(f"{scores[m]:.1f}" for m in
                                                            ("style_accuracy", "style_margin", "sane_rate"))]
    best = record[-1]["best"]
    assert (f"kept checkpoint:   {best['checkpoint']} (iteration {best['iter']}): {best['why']}"
            if best["checkpoint"] else f"kept checkpoint:   none: {best['why']}") == lines[at + 3]


@pytest.fixture(scope="module")
def style_run(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("style_eval")
    proc = make("eval-style", f"BASE={models['base']}", f"TUNED={models['tuned']}", "MODE=label",
                f"SPLIT_DIR={models['split']}", f"TRAIN_WORK_DIR={models['work_dir']}", f"STYLE_DIR={out}",
                "EVAL_LIMIT=12", "EVAL_MAX_OUT_LEN=16", "EVAL_DEVICE=cpu")
    run_dir = (out / "latest").resolve()
    results = {m: json.loads((run_dir / "results" / m / "style-label.json").read_text(encoding="utf-8"))
               for m in ("base", "tuned")}
    return {"out": out, "run_dir": run_dir, "results": results, "stdout": proc.stdout}


def test_tuned_model_learns_the_label_but_noise_scores_no_style(style_run: dict) -> None:
    base, tuned = style_run["results"]["base"], style_run["results"]["tuned"]
    # the base model writes random tokens: never a style label; the quickly tuned random model starts
    # with one, then writes noise, which the robust style score gives nothing (issue 14)
    assert base["label_rate"] == 0.0 and base["style_accuracy"] == 0.0
    assert tuned["label_rate"] >= 90.0
    assert tuned["style_accuracy"] == 0.0 and tuned["label_agreement"] == 0.0
    assert tuned["judged_gentle"] == tuned["judged_snarky"] == 0.0
    # the judge is the same for both, and reliable on the references
    assert base["judge_accuracy"] == tuned["judge_accuracy"] >= 90.0
    assert len(base["details"]) == len(tuned["details"]) == 12
    assert base["runaway_rate"] == 100.0  # random tokens never end


def test_summary_has_every_metric_for_both_models(style_run: dict) -> None:
    with (style_run["run_dir"] / "summary").glob("summary_*.csv").__next__().open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["dataset", "version", "metric", "mode", "base", "tuned"]
    assert [row[2] for row in rows[1:]] == list(METRICS["label"])
    for row in rows[1:]:
        assert row[0] == "style-label" and row[3] == "gen"
        float(row[4]), float(row[5])
    assert (style_run["out"] / "summary.md").read_text(encoding="utf-8").startswith("| dataset | version |")


def test_report_is_written(style_run: dict, models: dict[str, Path]) -> None:
    report = (style_run["out"] / "report.md").read_text(encoding="utf-8")
    for metric in METRICS["label"]:
        assert f"| {metric} |" in report
    for figure in ("report_scores.png", "report_training.png"):  # drawn beside the report, linked by name
        assert (style_run["out"] / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({figure})" in report
    # the bars right under the metric table (what they draw: tests/eval/test_report_figures.py)
    bars_at = report.index("](report_scores.png)")
    assert report.index("| style_accuracy |") < bars_at < report.index("How to read")
    # the training run's curves and its style score at each save (one checkpoint: DEMO_ITERS < the demo's
    # save interval, and mmengine validates at the last iteration), the kept checkpoint or why none
    training = report.split("## Training curves")[1].split("## Subjective check")[0]
    record = [json.loads(line) for line in
              (models["work_dir"] / "style_scores.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["iter"] for line in record] == [DEMO_ITERS]
    metrics = record[0]["metrics"]
    assert (f"| {DEMO_ITERS} | iter_{DEMO_ITERS}.pth | {metrics['style_accuracy']:.2f} | "
            f"{metrics['style_accuracy_gentle']:.2f} |") in training
    best = record[-1]["best"]
    assert (f"Kept: `{best['checkpoint']}` (iteration {best['iter']}): {best['why']}" if best["checkpoint"]
            else f"No checkpoint kept: {best['why']}.") in training
    side_by_side = report.split("## Subjective check")[1]
    assert side_by_side.count("\n| ") == 1 + 10  # header + 10 prompts
    assert str(models["tuned"]) in report
    assert not list(style_run["out"].glob(".report*"))  # atomic writes leave no temporaries
    assert "## LLM judge" not in report and "judge: base" not in report  # no JUDGE_API: no judge


def test_judge_adds_its_section_and_columns_to_the_report(style_run: dict, models: dict[str, Path],
                                                          cpu_server, tmp_path: Path) -> None:
    """`make judge` (what eval-style runs when JUDGE_API is set) on a copy of the run, with the real CPU
    server as the judge: the tiny model's verdicts are junk, all unparsable; `make report` shows them,
    and the web page's verdicts (VERDICTS=) when there are some; `make judge-pairs` with the same junk
    judge gives no verdict, only unparsable pairs."""
    shutil.copytree(style_run["run_dir"], tmp_path / "run", symlinks=True)
    (tmp_path / "latest").symlink_to("run")
    make("judge", f"STYLE_DIR={tmp_path}", f"JUDGE_API={cpu_server.base_url}",
         f"JUDGE_MODEL={SERVED_MODEL_NAME}", "JUDGE_MAX_TOKENS=8", "JUDGE_RETRIES=0")
    judged = json.loads((tmp_path / "run" / "llm_judge.json").read_text(encoding="utf-8"))
    assert [judged["models"][m]["counts"] for m in ("base", "tuned")] == [
        {"replies": 12, "parsed": 0, "unparsable": 12, "failed": 0}] * 2
    # a verdict file of the web page (one person, one bad line): the report counts it too
    verdicts = tmp_path / "verdicts.jsonl"
    mapping = {"A": {"name": "tuned"}, "B": {"name": "base"}}
    record = {"prompt": "p", "style": None, "verdict": "A", "endpoints": mapping}
    verdicts.write_text(json.dumps(record) + "\n{broken\n", encoding="utf-8")
    make("report", f"STYLE_DIR={tmp_path}", f"TRAIN_WORK_DIR={models['work_dir']}", f"VERDICTS={verdicts}")
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Side-by-side verdicts" in report and "| people | all | 1 | 1 | 1 | 1 | 0 | 0 | 0 |" in report
    assert "1 line(s) of it are not verdicts and are not counted" in report
    assert "## Ranking" not in report and not (tmp_path / "report_ranking.png").exists()  # two models
    # verdicts over four models (simulated, tests/verdict_sim.py): the report ranks them, with its figure
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text(lines(simulate(STRENGTHS, 20, 0)), encoding="utf-8")
    make("report", f"STYLE_DIR={tmp_path}", f"TRAIN_WORK_DIR={models['work_dir']}", f"VERDICTS={ranked}",
         "ANCHOR=sft", "RANKING_ROUNDS=50")
    with_ranking = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Ranking (Bradley–Terry)" in with_ranking and "Anchor: sft = 1000 (ANCHOR=sft)" in with_ranking
    assert "intervals from 50 of 50 bootstrap rounds (seed 42)" in with_ranking
    assert "](report_ranking.png)" in with_ranking
    assert (tmp_path / "report_ranking.png").read_bytes()[:4] == b"\x89PNG"
    # the pairwise judge on the same run: every pair asked in both orders; the junk answers are counted
    # apart, never as a verdict, by make verdicts beside the person's
    make("judge-pairs", f"STYLE_DIR={tmp_path}", f"JUDGE_API={cpu_server.base_url}",
         f"JUDGE_MODEL={SERVED_MODEL_NAME}", "JUDGE_MAX_TOKENS=8", "JUDGE_RETRIES=0")
    pairs = [json.loads(line) for line in
             (tmp_path / "run" / "pairwise_verdicts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(pairs) == 12 and all(p["verdict"] is None and p["unparsable"] for p in pairs)
    assert all(len(p["answers"]) == 2 and p["judge"] == SERVED_MODEL_NAME for p in pairs)
    verdicts.write_text(json.dumps(record) + "\n", encoding="utf-8")
    counted = make("verdicts", f"VERDICTS={verdicts} {tmp_path / 'run' / 'pairwise_verdicts.jsonl'}").stdout
    assert f"| judge {SERVED_MODEL_NAME} | all | 0 | 0 | 1 | 0 | 0 | 0 | 0 | 12 | — | — |" in counted
    assert "| people | all | 1 | 1 | 1 | 1 | 0 | 0 | 0 | 0 |" in counted
    assert "## LLM judge" in report and "| llm_unparsable_rate | 100.0 | 100.0 |" in report
    assert "| llm_style | – | – |" in report  # no verdict parsed: no score
    side_by_side = report.split("## Subjective check")[1]
    assert "| reference | judge: base | judge: tuned |" in side_by_side
    assert side_by_side.count("| unparsable | unparsable |") == 10


def test_eval_style_runs_the_judge_only_when_asked(tmp_path: Path) -> None:
    """The recipe (make -n): without JUDGE_API eval-style runs no judge; with it, `make judge` before the
    report; JUDGE_API without JUDGE_MODEL stops before any model runs."""
    args = ["eval-style", f"BASE={tmp_path}", f"TUNED={tmp_path}", f"STYLE_DIR={tmp_path}"]
    plain = make("-n", *args).stdout
    judged = make("-n", *args, "JUDGE_API=http://127.0.0.1:9/v1", "JUDGE_MODEL=judge").stdout
    assert "llm_judge" not in plain
    assert "-m style_tune.eval.llm_judge" in judged and "--model 'judge'" in judged
    assert judged.index("llm_judge") < judged.index("style_tune.eval.report")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    proc = subprocess.run(["make", "-s", *args, "JUDGE_API=http://127.0.0.1:9/v1"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "JUDGE_API= needs JUDGE_MODEL=" in proc.stderr


def test_prompts_are_the_training_prompts(style_run: dict, models: dict[str, Path]) -> None:
    """Each prompt OpenCompass sent is the data row's system text and input, system message first,
    which the model's chat template renders exactly as training did (render_chatml)."""
    from transformers import AutoTokenizer

    rows = {turn["conversation"][0]["input"]: turn["conversation"][0] for turn in json.loads(
        (models["split"] / "test.json").read_text(encoding="utf-8"))}
    predictions = json.loads((style_run["run_dir"] / "predictions" / "tuned" / "style-label.json")
                             .read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(models["tuned"])
    for item in predictions.values():
        system, human = item["origin_prompt"]
        row = rows[human["prompt"]]
        assert (system["role"], system["prompt"]) == ("SYSTEM", row["system"])
        assert human["role"] == "HUMAN"
        messages = [{"role": "system", "content": row["system"]}, {"role": "user", "content": row["input"]}]
        assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == \
            render_chatml(messages, add_generation_prompt=True)


@pytest.fixture(scope="module")
def internlm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny InternLM2 stand-in: InternLM2's remote modeling code (auto_map), random weights."""
    return chat_cases.tiny_model_path(tmp_path_factory.mktemp("internlm2"), arch="internlm2")


def test_internlm2_stand_in_runs_through_its_remote_code(internlm2: Path) -> None:
    """Loaded as OpenCompass loads internlm2_5-1_8b-chat: only with trust_remote_code, by auto_map,
    and its generate works with this env's transformers (it does not on 4.49+)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((internlm2 / "config.json").read_text(encoding="utf-8"))
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_internlm2.InternLM2ForCausalLM"
    assert all((internlm2 / f"{name}_internlm2.py").is_file() for name in ("modeling", "configuration"))
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForCausalLM.from_pretrained(internlm2, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(internlm2, trust_remote_code=True, torch_dtype=torch.float32)
    assert type(model).__name__ == "InternLM2ForCausalLM"
    assert type(model).__module__.startswith("transformers_modules."), "not the model directory's code"
    tokenizer = AutoTokenizer.from_pretrained(internlm2, trust_remote_code=True, padding_side="left")
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False) for text in ("你好", "今天下雨了吗？我没带伞")]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)  # KV cache + padding: the HF path
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)


def test_eval_select_runs_both_candidates_into_the_articles_table(
        tiny_model_dir: Path, internlm2: Path, tmp_path: Path) -> None:
    make("eval-select", f"SELECT_QWEN={tiny_model_dir}", f"SELECT_INTERNLM={internlm2}",
         f"FEWCLUE_CACHE={FEWCLUE}", "SELECT_MAX_OUT_LEN=8", "EVAL_DEVICE=cpu", f"SELECT_DIR={tmp_path}")
    table = (tmp_path / "summary.md").read_text(encoding="utf-8").strip().splitlines()
    assert table[0] == ("| dataset | version | metric | mode "
                        "| qwen2.5-1.5b-instruct-hf | internlm2_5-1_8b-chat-hf |")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert [row[0] for row in rows] == ["bustm-dev", "bustm-test", "ocnli_fc-dev", "ocnli_fc-test"]
    assert all(row[2:4] == ["accuracy", "gen"] for row in rows)
    assert [row[1] for row in rows[2:]] == ["51e956", "51e956"]  # the article's ocnli_fc prompt version
    for row in rows:
        assert 0.0 <= float(row[4]) <= 100.0 and 0.0 <= float(row[5]) <= 100.0
    # Both models answered every fixture row: 4 per file (ocnli's unlabelled "-" row dropped, as
    # OpenCompass does), the InternLM2 stand-in through its remote code.
    for model in ("qwen2.5-1.5b-instruct-hf", "internlm2_5-1_8b-chat-hf"):
        predictions = tmp_path / "latest" / "predictions" / model
        found = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in predictions.glob("*.json")}
        assert {name: len(rows) for name, rows in found.items()} == {
            "bustm-dev.json": 4, "bustm-test.json": 4, "ocnli_fc-dev.json": 4, "ocnli_fc-test.json": 4}
        assert all("prediction" in row for rows in found.values() for row in rows.values())


def test_eval_select_without_fewclue_says_how_to_get_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env["HOME"] = str(tmp_path)  # no ~/.cache/opencompass either
    proc = subprocess.run(["make", "-s", "eval-select", f"FEWCLUE_CACHE={tmp_path}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "make fewclue-data" in proc.stderr


def test_controllable_mode_runs(models: dict[str, Path], tmp_path: Path) -> None:
    """Controllable mode: each prompt's system text requests a style (the wiring, on a few prompts)."""
    split = tmp_path / "split"
    subprocess.run([sys.executable, "-m", "style_tune.data.split",
                    str(REPO_ROOT / "style_data" / "style_chat_data.csv"), "--out-dir", str(split),
                    "--mode", "controllable"], check=True, capture_output=True, timeout=120)
    out = tmp_path / "out"
    make("eval-style", f"BASE={models['base']}", f"TUNED={models['tuned']}", "MODE=controllable",
         f"SPLIT_DIR={split}", f"STYLE_DIR={out}", "EVAL_LIMIT=6", "EVAL_MAX_OUT_LEN=8", "EVAL_DEVICE=cpu",
         "EVAL_SAMPLES=4", f"TRAIN_WORK_DIR={tmp_path / 'none'}")
    result = json.loads(((out / "latest").resolve() / "results" / "base" / "style-controllable.json")
                        .read_text(encoding="utf-8"))
    assert set(METRICS["controllable"]) <= set(result)
    assert [d["requested"][0] for d in result["details"]] and all(
        d["requested"][0] in ("温柔", "毒舌") for d in result["details"])
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| # | prompt | requested | base | tuned | reference |" in report
    assert "no training curves" in report
    assert not (out / "report_training.png").exists() and (out / "report_scores.png").is_file()
