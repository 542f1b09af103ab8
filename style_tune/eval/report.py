"""The style-evaluation report: Markdown table, training loss curve, the models' replies side by side.

    python -m style_tune.eval.report RUN_DIR --out outputs/style_eval/report.md [--train-work-dir DIR]
        [--samples 10] [--seed 42]

RUN_DIR is one OpenCompass run of eval_configs/eval_style.py (``outputs/style_eval/latest`` after
``make eval-style``; its models: base and tuned, or those of COMPARE=, in that order). The report holds:
- every metric for each model (base, tuned, ...) and the references themselves (the held-out
  reference replies scored as if a model had written them: what a model that writes like the data
  gets), with what each number means and its range (style_tune/eval/style_metrics.py);
- the training loss curve, drawn from the XTuner work dir's ``*/vis_data/scalars.json`` into a PNG
  next to the report;
- with VERDICTS (`make verdicts`' section): the side-by-side verdicts; over three models or more, their
  Bradley–Terry ranking and its figure (a PNG next to the report);
- the article's subjective check: ``--samples`` random prompts (fixed ``--seed``) with every model's
  reply side by side.
Files are written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.io import write_atomically
from style_tune.core.prompts import STYLES, split_label
from style_tune.core.train_logs import loss_curve
from style_tune.eval.llm_judge import load_judgement, report_section, verdict_cell
from style_tune.eval.style_metrics import (
    LENGTH_METRICS,
    METRIC_HELP,
    METRICS,
    StyleJudge,
    group_prompts,
    load_rows,
    score_replies,
)
from style_tune.eval.verdicts import report_section as verdicts_section


def run_settings(run_dir: Path) -> dict:
    """The evaluated settings, from the config OpenCompass dumped into the run folder."""
    from mmengine.config import Config

    dumped = sorted((run_dir / "configs").glob("*.py"))
    if not dumped:
        raise SystemExit(f"style_report: {run_dir} is not an OpenCompass run folder (no configs/)")
    cfg = Config.fromfile(str(dumped[-1]), import_custom_modules=False)
    dataset = cfg.datasets[0]
    return {
        "mode": dataset["mode"], "abbr": dataset["abbr"], "test": dataset["path"],
        "train": dataset["eval_cfg"]["evaluator"]["train_path"], "limit": dataset["limit"],
        "sample_seed": dataset["seed"],
        "max_out_len": dataset["infer_cfg"]["inferencer"]["max_out_len"],
        # a directory; an API model (OpenAISDK): its name at its URL
        "paths": {model["abbr"]: model["path"] + (f" at {model['openai_api_base']}"
                                                  if model.get("openai_api_base") else "")
                  for model in cfg.models},
    }


def load_results(run_dir: Path, abbr: str, models: list[str]) -> dict[str, dict]:
    results = {}
    for model in models:
        path = run_dir / "results" / model / f"{abbr}.json"
        if not path.is_file():
            raise SystemExit(f"style_report: no results for {model}: {path} (did the run finish?)")
        results[model] = json.loads(path.read_text(encoding="utf-8"))
    return results


def reference_scores(settings: dict, samples: list[dict]) -> dict:
    """The metrics of the references themselves: every reference reply scored as if a model wrote it."""
    judge = StyleJudge.from_split(settings["train"])
    flat = [(ref, s) for s in samples for ref in s["references"]]
    return score_replies([ref for ref, _ in flat], [s["references"] for _, s in flat],
                         [s["requested_style"] or None for _, s in flat], settings["mode"], judge,
                         users=[s["input"] for _, s in flat])


def matching_reference(sample: dict, reply: str) -> str:
    """The reference in the style the reply announces (label mode), else the first one."""
    label = split_label(reply)[0]
    for ref in sample["references"]:
        if label is not None and split_label(ref)[0] == label:
            return ref
    return sample["references"][0]


def evaluated_samples(settings: dict, n_predictions: int) -> list[dict]:
    """The prompts the run evaluated, in its order (the dataset loader's draw, repeated)."""
    samples = group_prompts(load_rows(settings["test"]), settings["mode"])
    limit = settings["limit"]
    if 0 < limit < len(samples):
        keep = sorted(random.Random(settings["sample_seed"]).sample(range(len(samples)), limit))
        samples = [samples[i] for i in keep]
    if len(samples) != n_predictions:
        raise SystemExit(f"style_report: {n_predictions} results but {len(samples)} prompts in "
                         f"{settings['test']}: the file changed since the run")
    return samples


def plot_loss(curve: list[tuple[int, float]], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot([i for i, _ in curve], [loss for _, loss in curve], marker="." if len(curve) < 60 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomically(png, buffer.getvalue())


def cell(text: str | None, width: int = 120) -> str:
    """A reply as one Markdown table cell: newlines shown as ⏎, pipes escaped, long text cut."""
    if text is None:
        return "–"
    text = text.replace("\r", "").replace("\n", "⏎").replace("|", "\\|")
    return (text[:width] + "…") if len(text) > width else (text or "(empty)")


def number(metric: str, value) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if metric in LENGTH_METRICS else f"{value:.2f}"


def metric_table(mode: str, columns: dict[str, dict], fixed: dict[str, dict[str, str]] | None = None
                 ) -> list[str]:
    """The report's metric table (Markdown): one row per metric of ``mode`` in METRICS order
    (style_accuracy first), one column per scored set, then what the metric means. ``fixed``: cells
    to show as text instead of a number (column -> metric -> text)."""
    fixed = fixed or {}
    names = list(columns)
    metrics = [m for m in METRICS[mode] if any(m in columns[c] or m in fixed.get(c, {}) for c in names)]
    lines = ["| metric | " + " | ".join(names) + " | what it means (range) |",
             "|---|" + "---:|" * len(names) + "---|"]
    for metric in metrics:
        cells = [fixed.get(c, {}).get(metric) or number(metric, columns[c].get(metric)) for c in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {METRIC_HELP[metric]} |")
    return lines


def build_report(run_dir: Path, out: Path, train_work_dir: Path | None, n_samples: int, seed: int,
                 verdicts: Path | None = None, anchor: str | None = None,
                 rounds: int = defaults.RANKING_ROUNDS) -> str:
    run_dir = run_dir.resolve()
    settings = run_settings(run_dir)
    mode = settings["mode"]
    models = list(settings["paths"])
    results = load_results(run_dir, settings["abbr"], models)
    details = {m: results[m].get("details") or [] for m in models}
    if len({len(d) for d in details.values()}) != 1 or not details[models[0]]:
        raise SystemExit("style_report: the runs have no per-reply details (or different numbers)")
    samples = evaluated_samples(settings, len(details[models[0]]))
    refs = reference_scores(settings, samples)
    judged = load_judgement(run_dir)  # `make judge`'s verdicts on this run, if a judge ran

    lines = [
        f"# Style evaluation: {' vs '.join(models)}",
        "",
        f"- mode: **{mode}**; prompts: {len(samples)} distinct held-out prompts of `{settings['test']}`"
        + (f" (a random {settings['limit']}, seed {settings['sample_seed']})" if settings["limit"] else ""),
        *(f"- {m}: `{settings['paths'][m]}`" for m in models),
        f"- generation: OpenCompass `HuggingFacewithChatTemplate` (an API: `OpenAISDK`), greedy, at most "
        f"{settings['max_out_len']} tokens, stops at `<|im_end|>`; each prompt is the data row's system text "
        "and user input, rendered by the model's chat template (the prompt it was trained on)",
        "- style judge: TF-IDF character 1-3-grams + logistic regression over "
        f"{' / '.join(STYLES)} / neither, "
        f"trained on the replies of `{settings['train']}` (label words removed) and, for neither, on "
        "plain helpful answers (style_data/neutral_replies.txt), the split's user messages and shuffled "
        "replies; a reply counts for style only if it also passes the sanity gates (sane_rate; "
        "style_tune/eval/style_metrics.py)",
        f"- OpenCompass run: `{run_dir}` (predictions, per-reply details in results/, logs)",
        "",
        "## Scores",
        "",
    ]
    lines += metric_table(mode, {**{m: results[m] for m in models}, "references": refs},
                          {"references": {"chrf": "100 (by definition)", "rouge_l": "100 (by definition)",
                                          "runaway_rate": "–"}})
    lines += [
        "",
        "How to read it: *style_accuracy* is the headline (did the model answer sanely in a style, and the "
        "one it announced or was asked for; per style in the two rows under it); *sane_rate* and "
        "*judged_neither* say how many replies could not count (noise, loops, repeated labels, neutral "
        "text); *judge_accuracy* says how far the judge can be trusted (the same "
        "for every column: it is the judge scored on the references). *chrf* and *rouge_l* measure how "
        "much of the reference reply's wording the model reproduces: a different but good reply also "
        "scores low, so compare base and tuned rather than reading them as absolute quality. The "
        "*references* column scores the "
        "held-out reference replies themselves as if a model had written them (every reference of every "
        "prompt): lengths and distinct-n near it mean replies shaped like the data.",
        "",
        *(report_section(judged) + [""] if judged else []),
        *(verdicts_section(verdicts, figure=out.with_name(out.stem + "_ranking.png"), anchor=anchor,
                           seed=seed, rounds=rounds) if verdicts and verdicts.is_file() else []),
        "## Training loss",
        "",
    ]
    curve = loss_curve(train_work_dir) if train_work_dir and train_work_dir.is_dir() else []
    if curve:
        png = out.with_name(out.stem + "_loss.png")
        plot_loss(curve, png, f"XTuner training loss ({train_work_dir.name})")
        (i0, l0), (i1, l1) = curve[0], curve[-1]
        lines += [f"![training loss]({png.name})", "",
                  f"From `{train_work_dir}`: {l0:.3f} at iteration {i0} -> {l1:.3f} at iteration {i1} "
                  f"({len(curve)} logged points)."]
    else:
        lines.append(f"No XTuner training logs (`*/vis_data/scalars.json`) under `{train_work_dir}`: "
                     "no loss curve (TRAIN_WORK_DIR= names the training run).")
    picked = sorted(random.Random(seed).sample(range(len(samples)), min(n_samples, len(samples))))
    lines += [
        "",
        f"## Subjective check: {len(picked)} random held-out prompts (seed {seed})",
        "",
        "The article's own check: read the replies. ⏎ is a line break (in label mode the first line "
        "should be the style label).",
        "",
        "| # | prompt | " + ("requested | " if mode == "controllable" else "") + " | ".join(models)
        + " | reference |" + "".join(f" judge: {m} |" for m in models if judged),
        "|---|---|" + ("---|" if mode == "controllable" else "") + "---|" * (len(models) + 1)
        + ("---|" * len(models) if judged else ""),
    ]
    for n, i in enumerate(picked, start=1):
        sample = samples[i]
        replies = [details[m][i]["prediction"] for m in models]
        replies = [p[0] if isinstance(p, list) else p for p in replies]
        requested = f"{sample['requested_style']} | " if mode == "controllable" else ""
        verdicts = "".join(f" {verdict_cell(judged['models'][m]['details'][i])} |"
                           for m in models) if judged else ""
        # the reference in the style the last (most tuned) model announces
        lines.append(f"| {n} | {cell(sample['input'])} | {requested}"
                     + "".join(f"{cell(r)} | " for r in replies)
                     + f"{cell(matching_reference(sample, replies[-1]))} |{verdicts}")
    text = "\n".join(lines) + "\n"
    write_atomically(out, text.encode("utf-8"))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="an OpenCompass run folder of eval_configs/eval_style.py")
    parser.add_argument("--out", type=Path, required=True, help="the Markdown report to write")
    parser.add_argument("--train-work-dir", type=Path, help="the XTuner work dir of the tuned model")
    parser.add_argument("--samples", type=int, default=10, help="prompts for the side-by-side check")
    parser.add_argument("--seed", type=int, default=defaults.SEED,
                        help="seed of that draw and of the ranking's bootstrap")
    parser.add_argument("--verdicts", type=Path, help="the web page's verdicts: counted when the file exists "
                        "(three models or more: ranked, the figure beside the report)")
    parser.add_argument("--anchor", help="the ranking's model at 1000 (default: the one named base)")
    parser.add_argument("--rounds", type=int, default=defaults.RANKING_ROUNDS,
                        help="bootstrap rounds of the ranking's intervals (seeded by --seed)")
    args = parser.parse_args(argv)
    build_report(args.run_dir, args.out, args.train_work_dir, args.samples, args.seed, args.verdicts,
                 args.anchor, args.rounds)
    print(f"[report] {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
