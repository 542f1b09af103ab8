"""The last step of `make demo`: what the tiny model learned, in numbers and in replies.

    python -m style_tune.eval.demo_report --base DIR --merged DIR --work-dir DIR --test test.json [--show 6]

Loads the base and the merged model with transformers, prompts both with every held-out test prompt
through the merged model's own chat template (the system text of each row, as in training), decodes
greedily, and prints: the training loss at the start and the end (from the work dir's
vis_data/scalars.json), the share of replies that begin with a valid style label, a few replies
next to the references, the style score at each save on the validation split with the checkpoint it
kept and why (the work dir's style_scores.jsonl), and where every artefact went, the training curves'
figures by name (`make train` drew them into WORK_DIR/curves/ at its end).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from style_tune.core.prompts import STYLE_SYSTEMS, STYLES, split_label
from style_tune.core.train_logs import STYLE_SCORES, loss_curve, style_scores
from style_tune.train.curves import STEMS, STYLE_FIGURE

#: The style scores printed for each scored checkpoint: the headline, how clearly, how many could count.
RECORD_METRICS = ("style_accuracy", "style_margin", "sane_rate")


def test_prompts(test_json: Path) -> list[dict[str, str]]:
    """One entry per distinct held-out prompt (system text + input): system, input, reference outputs.

    Label mode: one per input (both styles are its references); controllable mode: one per style asked.
    """
    by_prompt: dict[tuple[str, str], dict] = {}
    for row in json.loads(test_json.read_text(encoding="utf-8")):
        turn = row["conversation"][0]
        entry = by_prompt.setdefault((turn.get("system", ""), turn["input"]),
                                     {"system": turn.get("system", ""), "input": turn["input"], "refs": []})
        entry["refs"].append(turn["output"])
    return list(by_prompt.values())


def generate(model_dir: Path, prompts: list[dict], max_new_tokens: int) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    replies = []
    for item in prompts:
        messages = [{"role": "system", "content": item["system"]}, {"role": "user", "content": item["input"]}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, top_p=None,
                                 top_k=None, temperature=None, repetition_penalty=1.0)
        replies.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return replies


def label_share(replies: list[str]) -> tuple[float, Counter[str]]:
    """Share of replies whose first line is a style label, and how often each label came."""
    labels = Counter(label for label, _ in map(split_label, replies) if label is not None)
    return sum(labels.values()) / max(len(replies), 1), labels


def one_line(text: str) -> str:
    return text.replace("\n", "⏎")[:60]


def record_lines(work_dir: Path) -> list[str]:
    """The style score at each save (WORK_DIR/style_scores.jsonl) as a small table, the kept checkpoint
    marked, and which one was kept and why (the record's last line); [] for a run not scored."""
    record = style_scores(work_dir)
    if not record:
        return []
    best = record[-1]["best"] if isinstance(record[-1].get("best"), dict) else {}
    kept = best.get("iter") if best.get("checkpoint") else None
    lines = [f"validation style score at each save ({work_dir / STYLE_SCORES}):",
             f"  {'iteration':>9}" + "".join(f"  {m:>14}" for m in RECORD_METRICS)]
    for line in record:
        got = line["metrics"] if isinstance(line.get("metrics"), dict) else {}
        cells = "".join(f"  {got[m]:>14.1f}" if isinstance(got.get(m), int | float) else f"  {'–':>14}"
                        for m in RECORD_METRICS)
        lines.append(f"  {line.get('iter')!s:>9}{cells}" + ("  <- kept" if line.get("iter") == kept else ""))
    if kept is None:
        lines.append(f"kept checkpoint:   none: {best.get('why') or 'the record names none'}")
    else:
        lines.append(f"kept checkpoint:   {best['checkpoint']} (iteration {kept}): {best.get('why')}")
        newest = max((line["iter"] for line in record if isinstance(line.get("iter"), int)), default=None)
        if newest != kept:  # `make convert` without ITER, as the demo runs it, takes the newest
            lines.append(f"                   (the demo merged the newest checkpoint, iteration {newest}; "
                         "`make convert ITER=best` converts the kept one)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--merged", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--show", type=int, default=6, help="replies to print")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--started", type=float, help="epoch seconds when the demo started")
    parser.add_argument("--stage", help="a second stage (dpo|orpo|sft): --base is the SFT model it began at")
    args = parser.parse_args(argv)
    before, after = ("SFT", f"+{args.stage}") if args.stage else ("base", "tuned")

    prompts = test_prompts(args.test)
    base = generate(args.base, prompts, args.max_new_tokens)
    tuned = generate(args.merged, prompts, args.max_new_tokens)
    curve = loss_curve(args.work_dir)

    print("\n================ style-tune demo (tiny random-weight Qwen2, CPU) ================")
    if curve:
        (i0, l0), (i1, l1) = curve[0], curve[-1]
        print(f"training loss: {l0:.3f} at iter {i0} -> {l1:.3f} at iter {i1}")
    controllable = any(item["system"] in STYLE_SYSTEMS.values() for item in prompts)
    if not controllable:
        (share_base, _), (share_tuned, labels) = label_share(base), label_share(tuned)
        print(f"replies that begin with a style label ({'/'.join(STYLES)}), {len(prompts)} held-out prompts: "
              f"base {share_base:.0%} -> tuned {share_tuned:.0%} ({dict(labels)})")
    else:
        print(f"{len(prompts)} held-out prompts, each asked once per style (controllable mode)")
    for line in record_lines(args.work_dir):
        print(line)
    print()
    for item, b, t in list(zip(prompts, base, tuned, strict=True))[: args.show]:
        style = next((s for s, text in STYLE_SYSTEMS.items() if text == item["system"]), None)
        print(f"user:      {item['input']}" + (f"   (asked for: {style})" if style else ""))
        print(f"reference: {one_line(item['refs'][0])}")
        print(f"{before + ':':<11}{one_line(b)}")
        print(f"{after + ':':<11}{one_line(t)}")
        print()
    print("The stand-in base read the training text without labels or system texts (make demo-base);")
    print("the fine-tune taught it the style format. Scores: make eval-demo (MODE= as here). The same")
    print("steps on Qwen2.5-1.5B-Instruct: make download split train convert merge.")
    print()
    print(f"{'SFT model:' if args.stage else 'stand-in base:':<19}{args.base}")
    print(f"training run:      {args.work_dir} (config, logs, iter_*.pth checkpoints)")
    curves_dir = args.work_dir / "curves"
    if curves_dir.is_dir():  # `make train` draws them at its end (make curves)
        print(f"training curves:   {curves_dir} (loss, learning rate, ... by iteration: PNGs, curves.csv)")
        drawn = [f"{stem}.png" for stem in STEMS if (curves_dir / f"{stem}.png").is_file()]
        if f"{STYLE_FIGURE}.png" in drawn:
            print(f"                   {STYLE_FIGURE}.png: the loss and the validation style scores by "
                  "iteration, the kept checkpoint marked")
        if drawn:
            print(f"                   figures: {', '.join(drawn)}")
    print(f"LoRA adapter:      {args.work_dir / 'adapter'}")
    print(f"merged model:      {args.merged}")
    print(f"data splits:       {args.test.parent}")
    if args.started:
        print(f"demo wall time:    {time.time() - args.started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
