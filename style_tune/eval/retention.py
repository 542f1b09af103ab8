"""`make eval-retention`: what style tuning cost on the article's FewCLUE tasks (eval env).

    python -m style_tune.eval.retention plan --base DIR --tuned "NAME=DIR[:MODE] ..." --mode MODE \\
        --margin POINTS --backend hf|lmdeploy           check the inputs, print what will be asked
    python -m style_tune.eval.retention report RUN_DIR --out report.md [--json report.json]

The base and every tuned model answer the FewCLUE bustm and ocnli_fc items of `make eval-select`
(eval_configs/retention.py takes eval-select's datasets, prompts and task layout with read_base). Each
tuned model is asked in its own training format and with no system text, each as a model of its own in
one OpenCompass run (an *entry*, abbr ``NAME@FORMAT``):

- controllable: once with each style's system text (style_tune.core.prompts.STYLE_SYSTEMS; format = the
  style's slug), and once with no system text (format ``none``);
- label: once, with label mode's system text (format ``label``). That is Qwen's default system text,
  which Qwen's chat template writes when a conversation has none: for a label model its own format and
  "no system text" are the same prompt (tests/eval/test_retention.py checks it), asked once.
- the base: no system text (``base``), the reference every other entry is compared with.

Tuned models are merged models (`make merge`). A LoRA adapter is refused with what to do: OpenCompass
loads one on the base only through peft (``peft_path``), which the eval environment does not hold.

The system text reaches the model through OpenCompass's chat-template path: the entry's meta template
(style_tune.core.prompts.OPENCOMPASS_META_TEMPLATE) begins with it as a SYSTEM message, and the model's
tokenizer chat template renders it, as in training (docs/chat-format.md).

The report reads OpenCompass's own per-item files: ``results/ENTRY/DATASET.json`` (written with
per-sample details, OpenCompass's default ``--dump-eval-details``) holds for every item the prompt, the
reply, the answer OpenCompass's postprocessor read from it (``predictions``) and the gold answer
(``references``); an item is right when the two are equal, which is how its AccEvaluator counts, and
the per-dataset accuracy it wrote is checked against them. Per task (the dev and test items together)
and entry:

- accuracy, and the difference to the base over the same items with a paired 95 % interval: a
  percentile bootstrap that resamples items (both models' answers to an item move together) of the
  mean per-item difference (scipy.stats.bootstrap, ROUNDS resamples, SEED);
- unparseable: answers from which the datasets' postprocessor (``first_capital_postprocess``: the first
  capital letter of the reply, '' when there is none) read no option of the task (TASK_OPTIONS: A/B for
  bustm, A/B/C for ocnli_fc, the letters OpenCompass's prompts offer; a task not there: the gold answers
  of its items). They count as wrong, as OpenCompass
  counts them, and are shown apart: a format failure is not lost knowledge. "lost" items (base right,
  this entry wrong) say how many of them were unparseable;
- the verdict against the non-inferiority margin stated before the run (``retention.margin`` in the
  run's config): ``non-inferior`` when the interval's lower end is above -MARGIN, ``worse`` when its
  upper end is below -MARGIN (worse by more than the margin), else ``inconclusive``; ``too few items``
  on a task of fewer than MIN_ITEMS items, where the bootstrap's interval is too narrow.

Bad input (plan) is one line, ``eval-retention: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from style_tune.core.compare import NAME  # a model's name: the comparisons' rule (a folder, a row)
from style_tune.core.io import write_files_atomically
from style_tune.core.prompts import MODES, STYLE_SLUGS, STYLE_SYSTEMS, system_text

STEP = "eval-retention"
BASE_NAME = "base"
#: The entry format of no system text (the chat template's default).
NO_SYSTEM = "none"
BACKENDS = ("hf", "lmdeploy")
LEVEL = 0.95
#: The bootstrap's interval: the percentile interval (see `paired_interval`).
METHOD = "percentile"
VERDICTS = ("non-inferior", "inconclusive", "worse", "too few items")
#: Fewer items than this in a task: no verdict. The percentile bootstrap's 95 % interval is too narrow on
#: small samples (benchmarks/bootstrap_coverage.md: it held the true difference in 63 % of simulated runs
#: of 8 items, in 93.8-97.8 % from 100 items on); FewCLUE's test files have thousands of items.
MIN_ITEMS = 100
#: The options each task's prompt offers (OpenCompass's FewCLUE_bustm_gen and FewCLUE_ocnli_fc_gen): an
#: answer among them is parsed, even where no item of a small sample has it as its gold answer.
TASK_OPTIONS = {"bustm": ("A", "B"), "ocnli_fc": ("A", "B", "C")}


class InputError(ValueError):
    """A bad input of the run: its message is the one line the user sees."""


@dataclass(frozen=True)
class Tuned:
    """A tuned model: its NAME, its (merged) model directory and MODE."""

    name: str
    path: str
    mode: str


@dataclass(frozen=True)
class Entry:
    """One model asked in one format: one OpenCompass model of the run."""

    abbr: str  # OpenCompass's model abbr: "base" or "NAME@FORMAT"
    name: str
    path: str  # the model directory
    mode: str | None  # None for the base
    format: str  # NO_SYSTEM, "label" or a style's slug
    system: str | None  # the system text sent; None: none


def parse_tuned(spec: str, default_mode: str) -> list[Tuned]:
    """The tuned models of ``NAME=DIR[:MODE] ...`` (space-separated; MODE defaults to ``default_mode``)."""
    found: list[Tuned] = []
    for word in spec.split():
        name, eq, where = word.partition("=")
        if not eq or not where:
            raise InputError(f"TUNED entry {word!r} names no model: write NAME=DIR[:MODE] "
                             f"(e.g. sft=models/my-merged:controllable)")
        if not NAME.fullmatch(name):
            raise InputError(f"TUNED entry {word!r}: the name {name!r} must be letters, digits, _ . - "
                             "(a letter or digit first)")
        if name == BASE_NAME:
            raise InputError(f"TUNED entry {word!r}: {BASE_NAME!r} is the base model's name (BASE=); "
                             "give the tuned model another name")
        path, colon, mode = where.rpartition(":")
        if not colon:
            path, mode = where, default_mode
        if mode not in MODES:
            raise InputError(f"TUNED entry {word!r}: unknown mode {mode!r}; use one of {', '.join(MODES)} "
                             "(NAME=DIR:MODE)")
        if any(t.name == name for t in found):
            raise InputError(f"TUNED entry {word!r}: the name {name!r} is given twice; each model needs its "
                             "own name")
        found.append(Tuned(name, path, mode))
    if not found:
        raise InputError("no tuned model: give TUNED=\"NAME=DIR[:MODE] ...\" (merged models)")
    return found


def parse_margin(text: str) -> float:
    """The non-inferiority margin in accuracy points: a number in [0, 100)."""
    try:
        margin = float(text)
    except ValueError:
        margin = math.nan
    if not (0 <= margin < 100):
        raise InputError(f"MARGIN={text!r} is not a margin in accuracy points: give a number from 0 to 100 "
                         "(e.g. MARGIN=2 for 2 points)")
    return margin


def formats(mode: str) -> list[tuple[str, str | None]]:
    """(format, system text) a model of MODE is asked in: its training format(s), and no system text."""
    if mode == "label":
        return [("label", system_text("label"))]  # = no system text for Qwen's template (module doc)
    return [*((STYLE_SLUGS[style], system) for style, system in STYLE_SYSTEMS.items()), (NO_SYSTEM, None)]


def entries(base: str, tuned: list[Tuned]) -> list[Entry]:
    """Every model the run asks, base first."""
    found = [Entry(BASE_NAME, BASE_NAME, base, None, NO_SYSTEM, None)]
    for model in tuned:
        found += [Entry(f"{model.name}@{fmt}", model.name, model.path, model.mode, fmt, system)
                  for fmt, system in formats(model.mode)]
    return found


def check_inputs(base: Path, tuned: list[Tuned], backend: str) -> None:
    """Raise InputError naming the first input the run cannot use."""
    if backend not in BACKENDS:
        raise InputError(f"unknown BACKEND={backend!r}; use hf or lmdeploy")
    if not (base / "config.json").is_file():
        raise InputError(f"no model in BASE={base} (no config.json): make download, or BASE=DIR")
    for model in tuned:
        path = Path(model.path)
        if (path / "config.json").is_file():
            continue
        if (path / "adapter_config.json").is_file():
            raise InputError(f"TUNED entry {model.name}={model.path} is a LoRA adapter: merge it first "
                             f"(make merge ADAPTER={model.path} MERGED=DIR; the eval env has no peft to load "
                             "it on the base)")
        raise InputError(f"TUNED entry {model.name}={model.path}: no model there (no config.json): "
                         "make merge, or give the merged model's directory")


# --------------------------------------------------------------------------------------------- statistics

def paired_interval(base: list[bool], other: list[bool], *, seed: int, rounds: int) -> tuple[float, float]:
    """The 95 % percentile bootstrap interval, in accuracy points, of mean(other) - mean(base) over the
    same items: ROUNDS resamples of the items (scipy.stats.bootstrap on the per-item differences, which
    resamples each item's pair of answers together), drawn from SEED. The percentile interval: the
    differences take three values (-1, 0, 1), where BCa's acceleration is undefined when every item
    agrees (scipy returns nan), and its ends are quantiles of resampled means a test can enumerate."""
    import numpy as np
    from scipy.stats import bootstrap

    if len(base) != len(other) or not base:
        raise ValueError(f"paired answers needed: {len(base)} base vs {len(other)}")
    diff = np.asarray(other, dtype=float) - np.asarray(base, dtype=float)
    if np.all(diff == diff[0]):  # every resample has the same mean (scipy would warn of a degenerate sample)
        return float(diff[0] * 100), float(diff[0] * 100)
    result = bootstrap((diff,), np.mean, n_resamples=rounds, confidence_level=LEVEL, method=METHOD,
                       batch=max(1, 2_000_000 // len(diff)), rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return float(ci.low) * 100, float(ci.high) * 100


def verdict(low: float, high: float, margin: float, items: int) -> str:
    """Non-inferiority against -MARGIN: the interval above it, below it, or across it (no verdict on fewer
    than MIN_ITEMS items)."""
    if items < MIN_ITEMS:
        return "too few items"
    if low > -margin:
        return "non-inferior"
    if high < -margin:
        return "worse"
    return "inconclusive"


# --------------------------------------------------------------------------------------------- the run

@dataclass(frozen=True)
class Item:
    prompt: str  # the user's message (the dataset's prompt): pairs entries' items
    reply: str
    answer: str  # what OpenCompass's postprocessor read from the reply
    gold: str

    @property
    def right(self) -> bool:
        return self.answer == self.gold


def task_of(dataset: str) -> str:
    """The FewCLUE task of a dataset abbr (``bustm-dev`` -> ``bustm``)."""
    return dataset.rsplit("-", 1)[0]


def run_settings(run_dir: Path) -> dict:
    """The run's ``retention`` settings and its dataset abbrs, from the config OpenCompass dumped."""
    from mmengine.config import Config

    dumped = sorted((run_dir / "configs").glob("*.py"))
    if not dumped:
        raise InputError(f"{run_dir} is not an OpenCompass run folder (no configs/): run make eval-retention")
    cfg = Config.fromfile(str(dumped[-1]), import_custom_modules=False)
    if "retention" not in cfg:
        raise InputError(f"{dumped[-1]} is not a run of eval_configs/retention.py (no retention settings)")
    settings = cfg.retention.to_dict()
    settings["datasets"] = [d["abbr"] for d in cfg.datasets]
    settings["entries"] = [Entry(**e) for e in settings["entries"]]
    return settings


def load_items(run_dir: Path, entry: str, dataset: str) -> tuple[list[Item], float]:
    """An entry's items of a dataset and the accuracy OpenCompass wrote, from results/ENTRY/DATASET.json."""
    path = run_dir / "results" / entry / f"{dataset}.json"
    if not path.is_file():
        raise InputError(f"no results for {entry} on {dataset}: {path} (did the run finish?)")
    result = json.loads(path.read_text(encoding="utf-8"))
    details = result.get("details")
    if not isinstance(details, dict):
        raise InputError(f"{path} has no per-item details: run OpenCompass with --dump-eval-details "
                         "(its default)")
    items = []
    for key in sorted((k for k in details if k.isdigit()), key=int):
        row = details[key]
        human = [m["prompt"] for m in row["prompt"] if m["role"] == "HUMAN"]
        items.append(Item(human[-1], row["origin_prediction"], str(row["predictions"]),
                          str(row["references"])))
    accuracy = float(result["accuracy"])
    counted = 100 * sum(i.right for i in items) / len(items) if items else math.nan
    if not math.isclose(counted, accuracy, abs_tol=1e-9):
        raise InputError(f"{path}: its accuracy {accuracy} is not its items' ({counted}): not an "
                         "AccEvaluator result of eval_configs/retention.py")
    return items, accuracy


def summarize(run_dir: Path) -> dict:
    """Every number of the report, from the run's own files."""
    settings = run_settings(run_dir)
    entries_ = settings["entries"]
    if entries_[0].abbr != BASE_NAME:
        raise InputError(f"{run_dir}: the run's first model is not the base")
    tasks: dict[str, list[str]] = {}
    for dataset in settings["datasets"]:
        tasks.setdefault(task_of(dataset), []).append(dataset)
    opencompass: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    items: dict[str, dict[str, list[Item]]] = {}  # task -> entry abbr -> items (its datasets in order)
    for task, datasets in tasks.items():
        for entry in entries_:
            pooled = items.setdefault(task, {}).setdefault(entry.abbr, [])
            for dataset in datasets:
                found, accuracy = load_items(run_dir, entry.abbr, dataset)
                opencompass.setdefault(dataset, {})[entry.abbr] = accuracy
                sizes[dataset] = len(found)
                pooled += found
    rows = []
    for task, by_entry in items.items():
        base = by_entry[BASE_NAME]
        options = options_of(task, base)
        for entry in entries_:
            mine = by_entry[entry.abbr]
            if [(i.prompt, i.gold) for i in mine] != [(i.prompt, i.gold) for i in base]:
                raise InputError(f"{run_dir}: {entry.abbr} was not asked the base's {task} items in the same "
                                 "order: no paired comparison")
            n = len(mine)
            unparseable = [i.answer not in options for i in mine]
            parsed = [i for i, bad in zip(mine, unparseable, strict=True) if not bad]
            row = {"task": task, "entry": entry.abbr, "name": entry.name, "format": entry.format,
                   "items": n, "right": sum(i.right for i in mine),
                   "accuracy": 100 * sum(i.right for i in mine) / n,
                   "unparseable": sum(unparseable), "unparseable_share": 100 * sum(unparseable) / n,
                   "parsed_accuracy": 100 * sum(i.right for i in parsed) / len(parsed) if parsed else None}
            if entry.abbr != BASE_NAME:
                right_base = [i.right for i in base]
                right = [i.right for i in mine]
                low, high = paired_interval(right_base, right, seed=settings["seed"],
                                            rounds=settings["rounds"])
                lost = [j for j in range(n) if right_base[j] and not right[j]]
                row |= {"difference": row["accuracy"] - 100 * sum(right_base) / n, "low": low, "high": high,
                        "lost": len(lost), "lost_unparseable": sum(unparseable[j] for j in lost),
                        "gained": sum(right[j] and not right_base[j] for j in range(n)),
                        "verdict": verdict(low, high, settings["margin"], n)}
            rows.append(row)
    return {"settings": {k: v for k, v in settings.items() if k != "entries"},
            "entries": [asdict(e) for e in entries_], "tasks": tasks, "dataset_items": sizes,
            "options": {task: options_of(task, by_entry[BASE_NAME]) for task, by_entry in items.items()},
            "rows": rows, "opencompass_accuracy": opencompass}


def options_of(task: str, items: list[Item]) -> list[str]:
    """The answers of TASK that are an option (TASK_OPTIONS; a task not there: its items' gold answers)."""
    return list(TASK_OPTIONS.get(task, ())) or sorted({i.gold for i in items})


def format_label(entry: dict) -> str:
    if entry["format"] == NO_SYSTEM:
        return "no system text"
    if entry["format"] == "label":
        return "label (its training format)"
    style = next(s for s, slug in STYLE_SLUGS.items() if slug == entry["format"])
    return f"{entry['format']} ({style} system text)"


def points(value: float) -> str:
    return f"{value:+.1f}"


def render(summary: dict, run_dir: Path) -> str:
    s = summary["settings"]
    entries_ = {e["abbr"]: e for e in summary["entries"]}
    margin = s["margin"]
    lines = [
        "# Retention: the article's FewCLUE tasks, base vs tuned models", "",
        f"Run: `{run_dir}` (OpenCompass, backend {s['backend']}). Base: `{entries_[BASE_NAME]['path']}`.",
        "",
        f"**Non-inferiority margin: {margin:g} accuracy points**, stated before the run (`MARGIN=`, kept in "
        "the run's config). A tuned model in a format is *non-inferior* when the lower end of its paired "
        f"95 % interval is above -{margin:g}, *worse* when the upper end is below -{margin:g} (it lost more "
        f"than the margin), else *inconclusive*; no verdict on a task of fewer than {MIN_ITEMS} items "
        "(the interval is too narrow there).",
        "",
        f"Interval: paired percentile bootstrap over the items (both models' answers to an item resampled "
        f"together), scipy.stats.bootstrap, {s['rounds']} resamples, seed {s['seed']}; the difference is "
        "the entry's accuracy minus the base's on the same items.",
        "",
        "Unparseable: OpenCompass's postprocessor of these datasets (`first_capital_postprocess`, the first "
        "capital letter of the reply) found no option of the task in the reply. Counted wrong, as "
        "OpenCompass counts it, and shown apart: a format failure is not lost knowledge. \"lost\": items "
        "the base got right and this one not (in brackets: of them unparseable); \"gained\": the reverse.",
    ]
    for task, datasets in summary["tasks"].items():
        rows = [r for r in summary["rows"] if r["task"] == task]
        counts = ", ".join(f"{d} {summary['dataset_items'][d]}" for d in datasets)
        lines += ["", f"## {task}", "",
                  f"{rows[0]['items']} items ({counts}); options {', '.join(summary['options'][task])}.", "",
                  "| model | asked with | accuracy | Δ vs base [95 % interval] "
                  "| lost (unparseable) / gained | unparseable | accuracy of parsed | verdict |",
                  "|---|---|---:|---|---|---:|---:|---|"]
        for r in rows:
            parsed = "—" if r["parsed_accuracy"] is None else f"{r['parsed_accuracy']:.1f}"
            if r["entry"] == BASE_NAME:
                diff, moved, judged = "(reference)", "", ""
            else:
                diff = f"{points(r['difference'])} [{points(r['low'])}, {points(r['high'])}]"
                moved = f"{r['lost']} ({r['lost_unparseable']}) / {r['gained']}"
                judged = r["verdict"]
            lines.append(f"| {r['name']} | {format_label(entries_[r['entry']])} | {r['accuracy']:.1f} "
                         f"| {diff} | {moved} | {r['unparseable']} ({r['unparseable_share']:.1f} %) "
                         f"| {parsed} | {judged} |")
    abbrs = list(entries_)
    lines += ["", "## OpenCompass's accuracy per dataset", "",
              "As OpenCompass wrote it (results/MODEL/DATASET.json; the tables above pool each task's "
              "datasets).",
              "", "| dataset | " + " | ".join(abbrs) + " |", "|---|" + "---:|" * len(abbrs)]
    for dataset, accuracy in summary["opencompass_accuracy"].items():
        lines.append(f"| {dataset} | " + " | ".join(f"{accuracy[a]:.2f}" for a in abbrs) + " |")
    systems = {e["format"]: e["system"] for e in summary["entries"] if e["system"]}
    lines += ["", "## The models and system texts", ""]
    lines += [f"- `{e['abbr']}`: `{e['path']}`" + (f", {e['mode']} mode" if e["mode"] else "")
              for e in summary["entries"]]
    lines += [""] + [f"- {fmt}: {text}" for fmt, text in systems.items()]
    lines += ["", "Label mode's system text is Qwen's default, the one its chat template writes when there "
              "is none: a label model's training format and \"no system text\" are the same prompt."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- commands

def plan(args: argparse.Namespace) -> int:
    try:
        margin = parse_margin(args.margin)
        if args.mode not in MODES:
            raise InputError(f"unknown MODE={args.mode!r}; use one of {', '.join(MODES)}")
        tuned = parse_tuned(args.tuned, args.mode)
        check_inputs(Path(args.base), tuned, args.backend)
    except InputError as err:
        print(f"{STEP}: error: {err}", file=sys.stderr)
        return 2
    print(f"[{STEP}] non-inferiority margin: {margin:g} accuracy points (stated before the run)")
    for entry in entries(args.base, tuned):
        print(f"[{STEP}] {entry.abbr}: {entry.path}, "
              f"{'system text: ' + entry.format if entry.system else 'no system text'}")
    return 0


def report(args: argparse.Namespace) -> int:
    run_dir = args.run_dir.resolve()
    try:
        summary = summarize(run_dir)
    except InputError as err:
        print(f"{STEP}: error: {err}", file=sys.stderr)
        return 2
    text = render(summary, run_dir)
    outputs = {args.out: text}
    if args.json:
        outputs[args.json] = json.dumps(summary, ensure_ascii=False, indent=1) + "\n"
    write_files_atomically(outputs, step=STEP)
    print(text)
    print(f"[{STEP}] report: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="check the inputs and print the models and formats the run asks")
    p.add_argument("--base", required=True)
    p.add_argument("--tuned", required=True, help='"NAME=DIR[:MODE] ..."')
    p.add_argument("--mode", required=True, help="the mode of a TUNED entry without :MODE")
    p.add_argument("--margin", required=True, help="non-inferiority margin, accuracy points")
    p.add_argument("--backend", default="hf")
    p.set_defaults(func=plan)
    r = sub.add_parser("report", help="the report of a run (RUN_DIR: OpenCompass's run folder)")
    r.add_argument("run_dir", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--json", type=Path, help="also every number, as JSON")
    r.set_defaults(func=report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
