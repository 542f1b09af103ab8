"""The style-evaluation report: metric table and bars, training curves, the models' replies side by side.

    python -m style_tune.eval.report RUN_DIR --out outputs/style_eval/report.md [--train-work-dir DIR]
        [--samples 10] [--seed 42] [--smoothing 0.6]

RUN_DIR is one OpenCompass run of eval_configs/eval_style.py (``outputs/style_eval/latest`` after
``make eval-style``; its models: base and tuned, or those of COMPARE=, in that order). The report holds:
- every metric for each model (base, tuned, ...) and the references themselves (the held-out
  reference replies scored as if a model had written them: what a model that writes like the data
  gets), with what each number means and its range (style_tune/eval/style_metrics.py), and the style
  scores (BAR_METRICS) as bars, a PNG next to the report (OUT's name + ``_scores.png``);
- the training run's curves (``--train-work-dir``, the XTuner work dir): the loss and the validation
  style scores by iteration with the kept checkpoint marked (``make curves``' style_scores figure; the
  loss alone where the run was not scored), a PNG next to the report (OUT's name + ``_training.png``),
  and the style score's record (``style_scores.jsonl``) as a table: which checkpoint was kept and why;
- with VERDICTS (`make verdicts`' section): the side-by-side verdicts; over three models or more, their
  Bradley–Terry ranking and its figure (a PNG next to the report);
- the article's subjective check: ``--samples`` random prompts (fixed ``--seed``) with every model's
  reply side by side.
The report and its two figures are renamed into place together (style_tune.core.io); a figure an
earlier report drew and this one does not is removed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.io import write_files_atomically
from style_tune.core.prompts import STYLE_SLUGS, STYLES, split_label
from style_tune.core.train_logs import STYLE_SCORES, style_scores
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

# The run's curves are drawn by `make curves`' own module (standard library, style_tune.core and
# matplotlib: the eval env has them), so the report and WORK_DIR/curves/ show the same figure.
from style_tune.train import curves

REFERENCES = "references"
#: The style scores drawn as bars beside the table, in this order: the headline, per style, how clearly,
#: how many replies could count.
BAR_METRICS = ("style_accuracy", *(f"style_accuracy_{STYLE_SLUGS[s]}" for s in STYLES), "style_margin",
               "sane_rate")
#: Of them, those on the -100 to 100 scale (their own panel); the others are shares, 0-100.
SIGNED_METRICS = ("style_margin",)


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


def bar_label(metric: str) -> str:
    """A bar group's label: ``style_accuracy`` (all), per style its ASCII name (English: the figures need
    no CJK font), else the metric's name."""
    for slug in STYLE_SLUGS.values():
        if metric == f"style_accuracy_{slug}":
            return f"style_accuracy\n{slug}"
    return "style_accuracy\nall" if metric == "style_accuracy" else metric


def plot_scores(columns: dict[str, dict], title: str) -> bytes | None:
    """The BAR_METRICS of each scored set (a model, the references) as grouped bars, one colour per set
    (the references grey, hatched): the shares on the left (0-100), style_margin on the right (-100 to
    100). A metric a set lacks (or NaN) gets no bar; None when no set has any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def value(name: str, metric: str) -> float | None:
        raw = columns[name].get(metric)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            return None
        return float(raw)

    names = list(columns)
    drawn_metrics = [m for m in BAR_METRICS if any(value(n, m) is not None for n in names)]
    panels = [metrics for metrics in ([m for m in drawn_metrics if m not in SIGNED_METRICS],
                                      [m for m in drawn_metrics if m in SIGNED_METRICS]) if metrics]
    if not panels:
        return None
    # wider with more sets: each group holds a bar per set
    width_in = 1.6 + 0.9 * len(drawn_metrics) * max(1, len(names)) ** 0.5
    fig, axes = plt.subplots(1, len(panels), figsize=(width_in, 3.8), dpi=120, squeeze=False,
                             gridspec_kw={"width_ratios": [len(p) for p in panels]})
    width = 0.8 / len(names)
    for ax, metrics in zip(axes[0], panels, strict=True):
        for k, name in enumerate(names):
            drawn = [(i, v) for i, m in enumerate(metrics) if (v := value(name, m)) is not None]
            reference = name == REFERENCES
            bars = ax.bar([i + (k - (len(names) - 1) / 2) * width for i, _ in drawn], [v for _, v in drawn],
                          width, label=name, color="lightgrey" if reference else f"C{k}",
                          hatch="//" if reference else None, edgecolor="grey" if reference else None)
            ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
        ax.set_xticks(range(len(metrics)), [bar_label(m) for m in metrics], fontsize="small")
        ax.set_xlim(-0.5, len(metrics) - 0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.axhline(0, color="black", linewidth=0.6)
        signed = metrics[0] in SIGNED_METRICS
        low = min([0.0] + [v for n in names for m in metrics if (v := value(n, m)) is not None])
        ax.set_ylim(-105 if signed and low < 0 else 0, 130)  # headroom above 100 for the legend
        ax.set_yticks(range(-100 if signed and low < 0 else 0, 101, 20 if not signed or low >= 0 else 50))
        ax.set_ylabel("points (-100 to 100)" if signed else "% of the replies")
    axes[0][0].legend(ncol=min(len(names), 6), fontsize="x-small", loc="upper left")
    fig.suptitle(title, fontsize="medium")
    return curves.png_bytes(fig)


def training_section(work_dir: Path | None, figure: Path, smoothing: float) -> tuple[list[str], bytes | None]:
    """The report's training section and its figure (None where the run logged nothing): the loss and the
    validation style scores by iteration with the kept checkpoint marked (make curves' figure, drawn by
    its module), the record of the style score at each save as a table, which checkpoint was kept and why."""
    logged = curves.collect(work_dir, smoothing) if work_dir and work_dir.is_dir() else None
    if work_dir is None or logged is None or not logged.series:
        return [f"No XTuner training logs (`*/vis_data/scalars.json`, `{STYLE_SCORES}`) under `{work_dir}`: "
                "no training curves (TRAIN_WORK_DIR= names the training run)."], None
    scored = any(name.startswith(curves.STYLE) for name in logged.series)
    stem = curves.STYLE_FIGURE if scored else "loss"
    png = curves.render(logged, work_dir.name, smoothing, only={stem}).get(f"{stem}.png")
    lines = [f"![training curves of {work_dir.name}]({figure.name})" if png else
             "(no figure: no finite value was logged)", ""]
    loss = sorted((i, v) for i, v in logged.series.get("loss", {}).items() if math.isfinite(v))
    said = [f"From `{work_dir}`"]
    if loss:
        (i0, l0), (i1, l1) = loss[0], loss[-1]
        said.append(f": training loss {l0:.3f} at iteration {i0} -> {l1:.3f} at iteration {i1} "
                    f"({len(loss)} logged points; smoothed as TensorBoard does, weight {smoothing:g})")
    said.append(f"; every curve of the run: `make curves WORK_DIR={work_dir}` (`{work_dir / 'curves'}`).")
    if logged.problems:
        said.append(f" {len(logged.problems)} log line(s) were not records and were skipped "
                    "(`make curves` names them).")
    lines.append("".join(said))
    record = style_scores(work_dir)
    if record:
        scores = [r["metrics"] if isinstance(r.get("metrics"), dict) else {} for r in record]
        metrics = [m for m in BAR_METRICS if any(m in got for got in scores)]
        best = record[-1]["best"] if isinstance(record[-1].get("best"), dict) else {}
        lines += ["", f"The style score at each save, on the validation split ("
                  f"`{work_dir / STYLE_SCORES}`):", "",
                  "| iteration | checkpoint | " + " | ".join(metrics) + " | kept |",
                  "|---:|---|" + "---:|" * len(metrics) + "---|"]
        for r, got in zip(record, scores, strict=True):
            kept = "**kept**" if best.get("checkpoint") and r.get("iter") == best.get("iter") else ""
            lines.append(f"| {r.get('iter')} | {r.get('checkpoint') or '–'} | "
                         + " | ".join(number(m, got.get(m)) for m in metrics) + f" | {kept} |")
        if best.get("checkpoint"):
            lines += ["", f"Kept: `{best['checkpoint']}` (iteration {best.get('iter')}): {best.get('why')}; "
                      "`make convert ITER=best` converts it."]
        else:
            lines += ["", f"No checkpoint kept: {best.get('why') or 'the record names none'}."]
    return lines, png


def cell(text: str | None, width: int = 120) -> str:
    """A reply as one Markdown table cell: newlines shown as ⏎, pipes escaped, long text cut."""
    if text is None:
        return "–"
    text = text.replace("\r", "").replace("\n", "⏎").replace("|", "\\|")
    return (text[:width] + "…") if len(text) > width else (text or "(empty)")


def number(metric: str, value: float | None) -> str:
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
                 rounds: int = defaults.RANKING_ROUNDS, smoothing: float = defaults.CURVES_SMOOTHING) -> str:
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
    scored = {**{m: results[m] for m in models}, REFERENCES: refs}
    lines += metric_table(mode, scored,
                          {REFERENCES: {"chrf": "100 (by definition)", "rouge_l": "100 (by definition)",
                                        "runaway_rate": "–"}})
    scores_png = out.with_name(out.stem + "_scores.png")
    bars = plot_scores(scored, f"Style scores on {len(samples)} held-out prompts ({mode} format)")
    if bars:
        lines += ["", f"![style scores by model: {', '.join(BAR_METRICS)}]({scores_png.name})"]
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
        "## Training curves",
        "",
    ]
    training_png = out.with_name(out.stem + "_training.png")
    training, curves_png = training_section(train_work_dir, training_png, smoothing)
    lines += training
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
        judge_cells = "".join(f" {verdict_cell(judged['models'][m]['details'][i])} |"
                              for m in models) if judged else ""
        # the reference in the style the last (most tuned) model announces
        lines.append(f"| {n} | {cell(sample['input'])} | {requested}"
                     + "".join(f"{cell(r)} | " for r in replies)
                     + f"{cell(matching_reference(sample, replies[-1]))} |{judge_cells}")
    text = "\n".join(lines) + "\n"
    figures = {path: png for path, png in ((scores_png, bars), (training_png, curves_png)) if png}
    write_files_atomically({**figures, out: text.encode("utf-8")}, step="style_report")
    for stale in {scores_png, training_png} - set(figures):  # an earlier report's, not this one's
        stale.unlink(missing_ok=True)
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
    parser.add_argument("--smoothing", type=curves.smoothing_weight, default=defaults.CURVES_SMOOTHING,
                        help="the training loss's smoothing, as `make curves` (default: %(default)s)")
    args = parser.parse_args(argv)
    build_report(args.run_dir, args.out, args.train_work_dir, args.samples, args.seed, args.verdicts,
                 args.anchor, args.rounds, args.smoothing)
    print(f"[report] {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
