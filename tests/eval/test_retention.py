"""`make eval-retention` on the CPU: the session's tiny model as the base, two stand-ins for merged tuned
models (the tiny model's architecture and tokenizer, other random weights), FewCLUE-format fixture files
(tests/eval/fixtures/fewclue). One OpenCompass run asks all five entries: the base, a controllable model
with each style's system text and with none, a label model in its format.

What the report says is checked against what OpenCompass wrote, read here on its own: the accuracies
against the per-item results (results/ENTRY/DATASET.json, the replies in predictions/ put through
OpenCompass's own postprocessor again), the unparseable answers against the same postprocessor's output,
the prompts against the entries' formats. The statistics are checked by hand: the paired interval against
the bootstrap distribution enumerated exactly, the counts and verdicts on a hand-built run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from style_tune.eval import retention
from style_tune.eval.retention import paired_interval

REPO_ROOT = Path(__file__).resolve().parents[2]
FEWCLUE = REPO_ROOT / "tests" / "eval" / "fixtures" / "fewclue"
ENTRIES = ["base", "ctl@gentle", "ctl@snarky", "ctl@none", "lab@label"]
TASKS = {"bustm": ["bustm-dev", "bustm-test"], "ocnli_fc": ["ocnli_fc-dev", "ocnli_fc-test"]}
MARGIN = "3.5"  # not the default: the report must show the margin the run was given


def make(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(["make", "-s", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tuned(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two stand-ins for merged tuned models: the tiny model with its weights moved by seeded noise."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("tuned")
    made = {}
    for name, seed in (("ctl", 1), ("lab", 2)):
        generator = torch.Generator().manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * param.std().nan_to_num(0.02) * 0.5)
        model.save_pretrained(root / name)
        AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(root / name)
        made[name] = root / name
    return made


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, tuned: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval_retention")
    start = time.monotonic()
    proc = make("eval-retention", f"BASE={tiny_model_dir}",
                f"TUNED=ctl={tuned['ctl']}:controllable lab={tuned['lab']}:label", f"MARGIN={MARGIN}",
                f"FEWCLUE_CACHE={FEWCLUE}", "RETENTION_MAX_OUT_LEN=8", "EVAL_DEVICE=cpu",
                f"RETENTION_DIR={out}")
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        pytest.fail(f"make eval-retention exited {proc.returncode}:\n{proc.stdout[-6000:]}\n"
                    f"{proc.stderr[-6000:]}")
    print(f"make eval-retention: {seconds:.0f} s")
    return {"out": out, "run_dir": (out / "latest").resolve(), "stdout": proc.stdout, "seconds": seconds,
            "report": (out / "report.md").read_text(encoding="utf-8"),
            "json": json.loads((out / "report.json").read_text(encoding="utf-8"))}


def opencompass_items(run_dir: Path, entry: str, dataset: str) -> list[dict]:
    """An entry's items of a dataset as OpenCompass wrote them: the reply (predictions/), the answer its
    postprocessor read and the gold answer (results/, per-sample details)."""
    from opencompass.utils.text_postprocessors import first_capital_postprocess

    replies = json.loads((run_dir / "predictions" / entry / f"{dataset}.json").read_text(encoding="utf-8"))
    result = json.loads((run_dir / "results" / entry / f"{dataset}.json").read_text(encoding="utf-8"))
    details = result["details"]
    items = []
    for key in sorted(replies, key=int):
        detail = details[key]
        # the details' answer is what OpenCompass's postprocessor makes of the reply in predictions/
        assert detail["predictions"] == first_capital_postprocess(replies[key]["prediction"])
        assert detail["references"] == replies[key]["gold"]
        items.append({"answer": detail["predictions"], "gold": detail["references"],
                      "prompt": replies[key]["origin_prompt"]})
    return items


def table(report: str, task: str) -> list[list[str]]:
    """The cells of a task's table in the Markdown report, one list per row."""
    section = report.split(f"\n## {task}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # without the header
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_table_accuracies_equal_the_per_item_results_opencompass_wrote(run: dict) -> None:
    report, run_dir = run["report"], run["run_dir"]
    summary_md = (run["out"] / "summary.md").read_text(encoding="utf-8")
    for task, datasets in TASKS.items():
        rows = table(report, task)
        assert [row[0] for row in rows] == [entry.split("@")[0] for entry in ENTRIES]
        base_right = None
        for entry, row in zip(ENTRIES, rows, strict=True):
            items = [i for d in datasets for i in opencompass_items(run_dir, entry, d)]
            right = [i["answer"] == i["gold"] for i in items]
            assert row[2] == f"{100 * sum(right) / len(right):.1f}", (task, entry)
            if base_right is None:
                base_right = right
                continue
            lost = sum(b and not r for b, r in zip(base_right, right, strict=True))
            gained = sum(r and not b for b, r in zip(base_right, right, strict=True))
            difference = 100 * (sum(right) - sum(base_right)) / len(right)
            assert row[3].startswith(f"{difference:+.1f} ["), (task, entry)
            assert row[4].startswith(f"{lost} (") and row[4].endswith(f"/ {gained}")
            assert row[7] == "too few items"  # 8 items a task: no verdict
    # the per-dataset table: OpenCompass's own accuracy, as in its summary
    for dataset in [d for ds in TASKS.values() for d in ds]:
        ours = next(line for line in report.splitlines() if line.startswith(f"| {dataset} |"))
        theirs = next(line for line in summary_md.splitlines() if line.startswith(f"| {dataset} |"))
        assert ours.split("|")[2:-1] == theirs.split("|")[5:-1]


def test_unparseable_answers_are_counted_apart(run: dict) -> None:
    """An answer from which OpenCompass's postprocessor read no option of the task ('' when the reply has no
    capital letter, or a capital that is no option) is counted apart, and wrong; the random models give
    some."""
    report, run_dir = run["report"], run["run_dir"]
    seen = 0
    for task, datasets in TASKS.items():
        options = {"bustm": {"A", "B"}, "ocnli_fc": {"A", "B", "C"}}[task]
        assert f"options {', '.join(sorted(options))}." in report.split(f"## {task}")[1]
        for entry, row in zip(ENTRIES, table(report, task), strict=True):
            items = [i for d in datasets for i in opencompass_items(run_dir, entry, d)]
            bad = [i for i in items if i["answer"] not in options]
            assert all(i["answer"] != i["gold"] for i in bad)
            assert row[5] == f"{len(bad)} ({100 * len(bad) / len(items):.1f} %)"
            parsed = [i for i in items if i["answer"] in options]
            assert row[6] == (f"{100 * sum(i['answer'] == i['gold'] for i in parsed) / len(parsed):.1f}"
                              if parsed else "—")
            seen += len(bad)
    assert seen > 0


def test_each_entry_was_asked_in_its_format(run: dict) -> None:
    """The prompts OpenCompass recorded: the FewCLUE prompt as the user message, after the entry's system text
    (none for the base and `none`), the same items in the same order for every entry."""
    from chat_cases import GENTLE_SYSTEM, LABEL_SYSTEM, SNARKY_SYSTEM

    systems = {"base": None, "ctl@gentle": GENTLE_SYSTEM, "ctl@snarky": SNARKY_SYSTEM, "ctl@none": None,
               "lab@label": LABEL_SYSTEM}
    for dataset in [d for ds in TASKS.values() for d in ds]:
        users = None
        for entry in ENTRIES:
            prompts = [i["prompt"] for i in opencompass_items(run["run_dir"], entry, dataset)]
            expected_roles = ["HUMAN"] if systems[entry] is None else ["SYSTEM", "HUMAN"]
            assert all([m["role"] for m in p] == expected_roles for p in prompts), entry
            if systems[entry] is not None:
                assert all(p[0]["prompt"] == systems[entry] for p in prompts), entry
            asked = [p[-1]["prompt"] for p in prompts]
            # the dataset's prompt, no "\n" added
            assert all(text.endswith("中进行选择。\n答：") for text in asked)
            users = users or asked
            assert asked == users


def test_the_margin_is_the_one_stated_before_the_run(run: dict) -> None:
    from mmengine.config import Config

    dumped = Config.fromfile(str(next((run["run_dir"] / "configs").glob("*.py"))),
                             import_custom_modules=False)
    assert dumped.retention["margin"] == float(MARGIN)
    assert f"[eval-retention] non-inferiority margin: {MARGIN} accuracy points" in run["stdout"]
    assert f"**Non-inferiority margin: {MARGIN} accuracy points**" in run["report"]
    assert run["json"]["settings"]["margin"] == float(MARGIN)
    assert not list(run["out"].glob(".report*"))  # atomic writes leave no temporaries


def test_lmdeploy_backend_runs_the_same_entries_with_turbomind(monkeypatch, tmp_path: Path) -> None:
    """BACKEND=lmdeploy (GPU only, not run here): the same datasets and entries, OpenCompass's TurboMind model
    from its stock Qwen2.5 config (greedy), the entry's system text in its meta template, the token budget
    overridden in both places TurboMind reads it."""
    from mmengine.config import Config
    from opencompass.models import TurboMindModelwithChatTemplate

    for name in ("base", "ctl"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("RETENTION_BASE", str(tmp_path / "base"))
    monkeypatch.setenv("RETENTION_TUNED", f"ctl={tmp_path / 'ctl'}:controllable")
    monkeypatch.setenv("RETENTION_BACKEND", "lmdeploy")
    monkeypatch.setenv("RETENTION_MAX_OUT_LEN", "32")
    turbo = Config.fromfile(str(REPO_ROOT / "eval_configs" / "retention.py"))
    hf = Config.fromfile(str(REPO_ROOT / "eval_configs" / "select_models.py"))
    assert turbo.datasets == hf.datasets and turbo.infer == hf.infer and turbo.eval == hf.eval
    assert [m["abbr"] for m in turbo.models] == ["base", "ctl@gentle", "ctl@snarky", "ctl@none"]
    assert all(m["type"] is TurboMindModelwithChatTemplate for m in turbo.models)
    assert all(m["max_out_len"] == 32 == m["gen_config"]["max_new_tokens"] and m["gen_config"]["top_k"] == 1
               for m in turbo.models)
    assert [m["meta_template"].get("begin", {}).get("prompt") for m in turbo.models] == [
        None, *retention.STYLE_SYSTEMS.values(), None]
    assert turbo.models[1]["path"] == str(tmp_path / "ctl")


# --------------------------------------------------------------------------------------------- by hand

def exact_bootstrap_quantiles(diff: list[int]) -> tuple[float, float]:
    """The 2.5 % and 97.5 % quantiles of the bootstrap distribution of mean(diff), enumerated: a resample of
    n items holds a items of -1, b of 0 and c of +1 with multinomial chances; its mean is (c - a) / n.
    Also checks that neither quantile sits near a step of the distribution (so that 10,000 resamples land
    on it, not beside it)."""
    n = len(diff)
    p = {v: diff.count(v) / n for v in (-1, 0, 1)}
    mass: dict[float, float] = {}
    for a in range(n + 1):
        for c in range(n + 1 - a):
            b = n - a - c
            chance = math.comb(n, a) * math.comb(n - a, c) * p[-1] ** a * p[1] ** c * p[0] ** b
            mass[(c - a) / n] = mass.get((c - a) / n, 0.0) + chance
    cdf, total = [], 0.0
    for value in sorted(mass):
        total += mass[value]
        cdf.append((value, total))
    low = next(v for v, f in cdf if f >= 0.025)
    high = next(v for v, f in cdf if f >= 0.975)
    assert all(abs(f - 0.025) > 0.01 and abs(f - 0.975) > 0.01 for _, f in cdf)
    return low * 100, high * 100


def test_paired_interval_is_the_bootstrap_distribution_computed_by_hand() -> None:
    # 10 items: the tuned model lost items 0-3 (base right, tuned wrong), gained item 4, agreed on 5
    base = [True, True, True, True, False, True, True, True, False, False]
    tuned = [False, False, False, False, True, True, True, True, False, False]
    diff = [int(t) - int(b) for b, t in zip(base, tuned, strict=True)]
    assert sorted(diff) == [-1, -1, -1, -1, 0, 0, 0, 0, 0, 1]
    expected = exact_bootstrap_quantiles(diff)
    assert expected == (-70.0, 10.0)
    for seed in (0, 1, 42):
        assert paired_interval(base, tuned, seed=seed, rounds=10_000) == pytest.approx(expected)
    # 80 % vs 40 %, four items lost and none gained
    assert paired_interval([True] * 8 + [False] * 2, [True] * 4 + [False] * 6, seed=0, rounds=10_000) == \
        pytest.approx(exact_bootstrap_quantiles([0] * 4 + [-1] * 4 + [0] * 2)) == (-70.0, -10.0)
    # every item agrees: no interval to speak of; all lost / all gained: the whole distance
    assert paired_interval([True, False] * 5, [True, False] * 5, seed=0, rounds=100) == (0.0, 0.0)
    assert paired_interval([False] * 4, [True] * 4, seed=0, rounds=100) == (100.0, 100.0)


def test_paired_interval_is_reproducible_from_its_seed() -> None:
    base = [i % 3 != 0 for i in range(300)]
    tuned = [i % 4 != 0 for i in range(300)]
    first = paired_interval(base, tuned, seed=7, rounds=2000)
    assert paired_interval(base, tuned, seed=7, rounds=2000) == first
    assert paired_interval(base, tuned, seed=8, rounds=2000) != first


def test_verdicts_against_the_margin() -> None:
    assert retention.verdict(-1.9, 3.0, 2.0, 500) == "non-inferior"
    assert retention.verdict(-2.0, 3.0, 2.0, 500) == "inconclusive"  # the bound must be above -MARGIN
    assert retention.verdict(-6.0, -2.1, 2.0, 500) == "worse"
    assert retention.verdict(-6.0, -1.0, 2.0, 500) == "inconclusive"
    assert retention.verdict(-1.0, 1.0, 2.0, retention.MIN_ITEMS - 1) == "too few items"


def fake_run(root: Path, answers: dict[str, list[str]], golds: list[str], margin: float = 2.0,
             task: str = "t") -> Path:
    """A hand-built run folder of eval_configs/retention.py: one dataset (of TASK), the given answers."""
    entries = [retention.Entry("base", "base", "/m/base", None, "none", None),
               retention.Entry("x@gentle", "x", "/m/x", "controllable", "gentle", "sys")]
    (root / "configs").mkdir(parents=True)
    settings = dict(margin=margin, seed=0, rounds=2000, backend="hf",
                    entries=[e.__dict__ for e in entries])
    (root / "configs" / "1.py").write_text(
        f"datasets = [dict(abbr='{task}-test')]\nretention = {settings!r}\n", encoding="utf-8")
    for entry, given in answers.items():
        details = {str(i): {"prompt": [{"role": "HUMAN", "prompt": f"q{i}"}],
                            "origin_prediction": f"reply {a}", "predictions": a, "references": g}
                   for i, (a, g) in enumerate(zip(given, golds, strict=True))}
        accuracy = 100 * sum(a == g for a, g in zip(given, golds, strict=True)) / len(golds)
        path = root / "results" / entry / f"{task}-test.json"
        path.parent.mkdir(parents=True)
        result = {"accuracy": accuracy, "details": {"type": "GEN", **details}}
        path.write_text(json.dumps(result), encoding="utf-8")
    return root


def test_report_counts_on_a_hand_built_run(tmp_path: Path) -> None:
    """200 items (options A, B): the base right on 150; the tuned model right on 140 of those, wrong on 10 of
    them with 6 unparseable answers ('' and 'Z'), and right on 20 the base missed. Hand-counted: accuracy
    75.0 vs 80.0, 10 lost (6 unparseable), 20 gained, 6 unparseable of 200."""
    golds = ["A", "B"] * 100
    flip = {"A": "B", "B": "A"}
    base = golds[:150] + [flip[g] for g in golds[150:]]
    tuned = golds[:140] + ["", "", "", "Z", "Z", "Z"] + [flip[g] for g in golds[146:150]]
    tuned += golds[150:170] + [flip[g] for g in golds[170:]]
    run_dir = fake_run(tmp_path / "run", {"base": base, "x@gentle": tuned}, golds)
    summary = retention.summarize(run_dir)
    rows = {r["entry"]: r for r in summary["rows"]}
    assert rows["base"]["accuracy"] == 75.0 and rows["base"]["unparseable"] == 0
    x = rows["x@gentle"]
    assert (x["accuracy"], x["difference"]) == (80.0, 5.0)
    assert (x["lost"], x["lost_unparseable"], x["gained"]) == (10, 6, 20)
    assert (x["unparseable"], x["unparseable_share"]) == (6, 3.0)
    assert x["parsed_accuracy"] == pytest.approx(100 * 160 / 194)
    assert x["low"] < 5.0 < x["high"] and x["verdict"] == "non-inferior"
    text = retention.render(summary, run_dir)
    assert "| x | gentle (温柔 system text) | 80.0 | +5.0 [" in text
    assert "| 10 (6) / 20 | 6 (3.0 %) | 82.5 |" in text
    # the same answers shifted: a model much worse than the base
    worse = fake_run(tmp_path / "worse", {"base": golds, "x@gentle": tuned[:100] + [""] * 100}, golds)
    assert [r.get("verdict") for r in retention.summarize(worse)["rows"]] == [None, "worse"]


def test_a_run_whose_items_differ_is_refused(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path / "run", {"base": ["A"] * 100, "x@gentle": ["A"] * 100}, ["A"] * 100)
    path = run_dir / "results" / "x@gentle" / "t-test.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    result["details"]["5"]["prompt"][0]["prompt"] = "another question"
    path.write_text(json.dumps(result), encoding="utf-8")
    with pytest.raises(retention.InputError, match="not asked the base's t items"):
        retention.summarize(run_dir)


# --------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("tuned_spec", "margin", "message"), [
    ("ctl={missing}", "2", "TUNED entry ctl={missing}: no model there (no config.json)"),
    ("ctl={model}:fancy", "2", "unknown mode 'fancy'"),
    ("ctl={model}", "two", "MARGIN='two' is not a margin in accuracy points"),
    ("ctl={model}", "-1", "MARGIN='-1' is not a margin in accuracy points"),
    ("base={model}", "2", "'base' is the base model's name"),
    ("ctl={model} ctl={model}", "2", "the name 'ctl' is given twice"),
    ("ctl={adapter}", "2", "is a LoRA adapter: merge it first"),
])
def test_bad_input_is_one_line(tuned_spec: str, margin: str, message: str, tiny_model_dir: Path,
                               tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    spec = tuned_spec.format(missing=tmp_path / "nowhere", model=tiny_model_dir, adapter=adapter)
    proc = make("eval-retention", f"BASE={tiny_model_dir}", f"TUNED={spec}", f"MARGIN={margin}",
                f"RETENTION_DIR={tmp_path / 'out'}", timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "eval-retention: error:" in line]
    assert len(errors) == 1 and message.format(missing=tmp_path / "nowhere") in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_a_missing_base_is_one_line(tmp_path: Path) -> None:
    proc = make("eval-retention", f"BASE={tmp_path / 'nobase'}", f"TUNED=t={tmp_path}", timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"eval-retention: error: no model in BASE={tmp_path / 'nobase'} (no config.json)" in proc.stderr


def test_an_option_no_gold_answer_has_is_still_an_option() -> None:
    """ocnli_fc offers A, B and C: a C is an answer (wrong here), not a format failure, though no item of
    this sample has C for its gold; a task retention does not know takes its gold answers as its options."""
    golds = ["A", "B"] * 4

    def unparseable(task: str, root: Path) -> list[int]:
        run_dir = fake_run(root, {"base": golds, "x@gentle": ["C", "Z", *golds[2:]]}, golds, task=task)
        summary = retention.summarize(run_dir)
        assert summary["options"] == {task: ["A", "B", "C"] if task == "ocnli_fc" else ["A", "B"]}
        return [r["unparseable"] for r in summary["rows"]]

    with tempfile.TemporaryDirectory() as tmp:
        assert unparseable("ocnli_fc", Path(tmp) / "ocnli") == [0, 1]  # Z only
        assert unparseable("other", Path(tmp) / "other") == [0, 2]  # C and Z
