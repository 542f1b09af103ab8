"""`make bench`: training throughput and memory of the recipe variants, measured through XTuner.

    python -m benchmarks.bench_train --model DIR [--data train.json] [--variants int8,nf4,bf16,bf16_packed]
        [--steps 10] [--warmup 3] [--device cuda|cpu] [--out benchmarks/train_bench_<device>]

Each variant is one shipped config (xtuner_configs/), run by mmengine's Runner exactly as
`xtuner train` builds it (XTuner's model, dataset, collate function, optimizer wrapper and train
loop), for warm-up + measured optimizer steps, in a subprocess of its own so that its memory peak is
its own. Checkpointing and the style score (validation) are switched off; a timing hook brackets every
step with device synchronisation. On a CPU the model and optimizer settings come from the CPU config
(qwen2_5_tiny_lora_style_cpu.py: fp32, no bitsandbytes) while the data settings (batch size,
max_length, packing) stay each variant's, so the pad-token share is the real one.

Reported per variant: non-pad tokens/s, samples/s, pad-token share, step time median and spread,
peak memory (torch.cuda.max_memory_allocated on a GPU, peak RSS on a CPU) and MFU (LoRA training
~ 4·N FLOP per non-pad token, N = base model parameters; against this device's measured matmul rate).
Writes OUT.json and OUT.md naming the machine, device, library versions and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core import defaults

CONFIGS = REPO_ROOT / "xtuner_configs"
#: name -> (shipped config, what it is, config overrides). "bf16_packed" is the former default
#: (packing without varlen attention: conversations in a pack attend to each other), kept to compare.
VARIANTS = {
    "int8": (
        "qwen2_5_1_5b_instruct_lora_int8_style_e3.py",
        "the article's settings: 8-bit LLM.int8 base, bs 20, len 256, no packing",
        {},
    ),
    "nf4": ("qwen2_5_1_5b_instruct_qlora_nf4_style_e3.py", "4-bit NF4 QLoRA, bs 20, len 256, no packing", {}),
    "bf16": (
        "qwen2_5_1_5b_instruct_lora_bf16_style_e3.py",
        "the default: bf16 LoRA, length-grouped bs 32, len 256, no packing",
        {},
    ),
    "bf16_packed": (
        "qwen2_5_1_5b_instruct_lora_bf16_style_e3.py",
        "former default: bf16 LoRA packed to 2048, bs 1, no varlen attention (cross-contaminating)",
        {
            "train_dataloader.batch_size": 1,
            "train_dataloader.dataset.max_length": 2048,
            "train_dataloader.dataset.pack_to_max_length": True,
            "train_dataloader.sampler": {"_delete_": True, "type": "DefaultSampler", "shuffle": True},
        },
    ),
}
CPU_CONFIG = CONFIGS / "qwen2_5_tiny_lora_style_cpu.py"


def matmul_tflops(device: str) -> float:
    """This device's dense matrix rate: bf16 8192^3 on a GPU, fp32 2048^3 on a CPU (TFLOP/s)."""
    import torch

    n, dtype, reps = (8192, torch.bfloat16, 20) if device == "cuda" else (2048, torch.float32, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def batch_counts(data: dict) -> tuple[int, int]:
    """(non-pad tokens, token positions) of one batch from XTuner's ``default_collate_fn``.

    XTuner pads ``input_ids`` with id 0, a real vocabulary entry (not the tokenizer's pad token), so
    padding is told by ``attention_mask``, which marks each row's own length; a varlen-packed batch
    has no mask and no padding (one row packed to its full length).
    """
    ids = data["input_ids"]
    mask = data.get("attention_mask")
    return (int(mask.sum()) if mask is not None else int(ids.numel())), int(ids.numel())


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Train one variant for warmup + steps iterations in this process; return its measurements."""
    import torch
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    config_file, _, overrides = VARIANTS[name]
    cfg = Config.fromfile(str(CONFIGS / config_file))
    cfg.merge_from_dict(overrides)
    if args.device == "cpu":  # the CPU config's model and optimizer, the variant's data settings
        cpu = Config.fromfile(str(CPU_CONFIG))
        cfg.model = cpu.model
        cfg.optim_wrapper = cpu.optim_wrapper
    if args.cfg_options:
        from mmengine.config import DictAction

        options = argparse.ArgumentParser()
        options.add_argument("--o", nargs="+", action=DictAction)
        cfg.merge_from_dict(options.parse_args(["--o", *args.cfg_options]).o)
    total = args.warmup + args.steps
    cfg.train_cfg.pop("max_epochs", None)
    cfg.train_cfg.max_iters = total
    cfg.param_scheduler = None  # constant lr: schedules do not change step cost
    cfg.custom_hooks = []  # no hooks of ours inside the timed loop
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None  # no style score (validation) at the end
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 10**6
    cfg.visualizer = None
    cfg.work_dir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    cfg.log_level = "WARNING"

    class StepTimer(Hook):
        priority = "VERY_LOW"

        def __init__(self) -> None:
            self.times: list[float] = []
            self.tokens: list[int] = []
            self.padded: list[int] = []
            self.samples: list[int] = []
            self.start = 0.0

        def before_train_iter(self, runner: Runner, batch_idx: int, data_batch: dict | None = None) -> None:
            if len(self.times) == args.warmup and args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(args.device)
            self.start = time.perf_counter()

        def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: dict | None = None,
                             outputs: dict | None = None) -> None:
            assert data_batch is not None  # mmengine's train loop passes every batch to its hooks
            sync(args.device)
            self.times.append(time.perf_counter() - self.start)
            data = data_batch["data"]
            real, positions = batch_counts(data)
            self.tokens.append(real)
            self.padded.append(positions)
            cumulative = data.get("cumulative_len")
            self.samples.append(
                sum(len(c) - 1 for c in cumulative) if cumulative is not None else self._count_samples(data)
            )

        @staticmethod
        def _count_samples(data: dict) -> int:
            # Packed rows hold several conversations: count their ends (<|im_end|> labelled, not -100).
            labels = data["labels"]
            ends = (labels == im_end_id).sum()
            return int(ends) if int(ends) > 0 else int(labels.shape[0])

    timer = StepTimer()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(timer)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    im_end_id = tok.convert_tokens_to_ids("<|im_end|>")
    runner.train()

    measured = slice(args.warmup, None)
    times, tokens = timer.times[measured], timer.tokens[measured]
    padded, samples = timer.padded[measured], timer.samples[measured]
    llm = runner.model.llm
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    n_params = sum(p.numel() for name, p in base.named_parameters() if "lora_" not in name)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    elapsed = sum(times)
    return dict(
        variant=name,
        config=f"xtuner_configs/{config_file}",
        steps=len(times),
        batch_size=cfg.train_dataloader.batch_size,
        max_length=cfg.train_dataloader.dataset.max_length,
        packed=bool(cfg.train_dataloader.dataset.pack_to_max_length),
        tokens_per_s=sum(tokens) / elapsed,
        samples_per_s=sum(samples) / elapsed,
        pad_share=1 - sum(tokens) / sum(padded),
        step_s_median=statistics.median(times),
        step_s_min=min(times),
        step_s_max=max(times),
        peak_gib=peak,
        peak_kind="torch.cuda.max_memory_allocated" if args.device == "cuda" else "process peak RSS",
        base_params=n_params,
        train_flop_per_s=4 * n_params * sum(tokens) / elapsed,
        step_times=times,
        step_tokens=tokens,
        step_positions=padded,
    )


def inference_memory(model_dir: str) -> dict:
    """bf16 inference of a (merged) model on the GPU: peak memory for one short chat reply."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.cuda.reset_peak_memory_stats()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16).cuda().eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "今天加班到十点，好累"}], add_generation_prompt=True, return_tensors="pt"
    ).cuda()
    with torch.no_grad():
        model.generate(ids, max_new_tokens=128, do_sample=False)
    return dict(
        model=model_dir, dtype="bfloat16", peak_gib=torch.cuda.max_memory_allocated() / 2**30, budget_gib=16
    )


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "xtuner", "mmengine", "peft", "bitsandbytes", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def write_report(results: dict, out: Path) -> None:
    """OUT.json (the measurements) and OUT.md (render_markdown of them), each written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(results, indent=2, ensure_ascii=False) + "\n"),
                         (".md", render_markdown(results))):
        tmp = out.with_suffix(f"{suffix}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out.with_suffix(suffix))


def render_markdown(results: dict) -> str:
    """The Markdown table of a result JSON (benchmarks/*.md; tests/core/test_bench_tables.py checks them)."""
    peak_rate = results["matmul_tflops"]
    lines = [
        f"# Training benchmark: {results['device_name']}",
        "",
        f"Command: `{results['command']}`  ",
        f"Model: {results['model']} ({results.get('base_params', 0) / 1e6:.0f} M parameters); "
        f"data: {results['data']}; {results['steps']} measured steps after {results['warmup']} warm-up.  ",
        f"Device matmul rate (measured): {peak_rate:.1f} TFLOP/s ({results['matmul_kind']}).  ",
        f"Config overrides: {' '.join(results.get('cfg_options', [])) or 'none (the shipped configs)'}.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items() if v) + ".",
        "",
        "| variant | batch × len | packed | non-pad tok/s | samples/s | pad share | step s (median, min–max) "
        "| peak GiB | MFU |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for v in results["variants"]:
        if "error" in v:
            lines.append(f"| {v['variant']} | | | failed: {v['error']} | | | | | |")
            continue
        mfu = v["train_flop_per_s"] / (peak_rate * 1e12)
        lines.append(
            f"| {v['variant']} | {v['batch_size']} × {v['max_length']} | {'yes' if v['packed'] else 'no'} "
            f"| {v['tokens_per_s']:,.0f} | {v['samples_per_s']:,.1f} | {v['pad_share']:.0%} "
            f"| {v['step_s_median']:.3f} ({v['step_s_min']:.3f}–{v['step_s_max']:.3f}) "
            f"| {v['peak_gib']:.2f} | {mfu:.1%} |"
        )
    lines += [
        "",
        f"Peak memory: {results['variants'][0].get('peak_kind', '')}. MFU: 4·N FLOP per non-pad "
        "token (LoRA: forward + activation gradients; no gradients for the frozen weights) over the "
        "measured matmul rate.",
    ]
    if results.get("inference"):
        inf = results["inference"]
        lines += [
            "",
            f"Inference ({inf['dtype']}, merged-model shapes, 128 new tokens): peak "
            f"{inf['peak_gib']:.2f} GiB against the article's {inf['budget_gib']} GB budget.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="base model directory (tiny on CPU, full-size on GPU)")
    parser.add_argument("--data", default=defaults.train_data())
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--inference-model", help="GPU only: also measure bf16 inference memory of a model")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config values for every variant (mmengine --cfg-options syntax)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args(argv)

    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    os.environ["STYLE_TUNE_MODEL"] = args.model
    os.environ["STYLE_TUNE_DATA"] = args.data
    if args.one:
        print("BENCH_RESULT " + json.dumps(run_variant(args.one, args)), flush=True)
        return 0

    for path, what in ((Path(args.model) / "config.json", "model"), (Path(args.data), "data")):
        if not path.is_file():
            sys.exit(f"bench: error: {what} {path} not found (make tiny-model / make split)")
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"bench: error: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")

    results = dict(
        command="python -m benchmarks.bench_train " + shlex.join(sys.argv[1:] if argv is None else argv),
        device=args.device,
        device_name=device_name(args.device),
        model=args.model,
        data=args.data,
        steps=args.steps,
        warmup=args.warmup,
        versions=versions(),
        variants=[],
        cfg_options=args.cfg_options,
        matmul_kind="bf16 8192³" if args.device == "cuda" else "fp32 2048³",
    )
    results["matmul_tflops"] = matmul_tflops(args.device)
    for name in names:
        print(f"bench: {name} ({VARIANTS[name][1]}) ...", flush=True)
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--model",
            args.model,
            "--data",
            args.data,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--device",
            args.device,
        ]
        if args.cfg_options:
            cmd += ["--cfg-options", *args.cfg_options]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        found = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
        if proc.returncode != 0 or not found:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"bench: {name} failed: {tail[0]}", file=sys.stderr)
            results["variants"].append(dict(variant=name, error=tail[0][:200]))
            continue
        record = json.loads(found[-1].removeprefix("BENCH_RESULT "))
        print(
            f"bench: {name}: {record['tokens_per_s']:,.0f} non-pad tok/s, pad {record['pad_share']:.0%}, "
            f"peak {record['peak_gib']:.2f} GiB",
            flush=True,
        )
        results["variants"].append(record)
        results["base_params"] = record["base_params"]
    if args.inference_model and args.device == "cuda":
        results["inference"] = inference_memory(args.inference_model)
    out = args.out or REPO_ROOT / "benchmarks" / f"train_bench_{args.device}"
    write_report(results, out)
    print(out.with_suffix(".md").read_text(encoding="utf-8"))
    return 1 if any("error" in v for v in results["variants"]) else 0


if __name__ == "__main__":
    sys.exit(main())
