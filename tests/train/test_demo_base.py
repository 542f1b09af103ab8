"""The demo's pieces wire together (cheaply: no multi-minute training here; `make demo` itself runs end to
end, with small settings, in tests/eval/test_eval_make_targets.py).

- style_tune/train/demo_base.py: the cut tokenizer tokenizes the training rows exactly as the full Qwen
  tokenizer does (the tool checks; here too, through the saved files), still encodes any text, keeps
  Qwen's special tokens and chat template, and the model config points at the new ids. Its pretraining
  text: one unlabelled reply per prompt, in conversations that keep one style, and the styles'
  descriptions as plain documents.
- The Makefile's demo runs the real XTuner config path for each MODE, with the demo's --cfg-options.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from style_tune.core.prompts import IM_END, STYLES, chatml_block, render_chatml, split_label, system_text

REPO_ROOT = Path(__file__).resolve().parents[2]


def demo_env() -> dict[str, str]:
    """The code paths every demo step pins (the Makefile's DEMO_ENV, its one place)."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    line = re.search(r"^DEMO_ENV := (.+)$", makefile, re.M).group(1)
    return dict(item.split("=", 1) for item in line.split())


def build_demo_base(out: Path, split_dir: Path, threads: int) -> None:
    """`make demo-base`'s command, 3 pretraining steps, with the demo's pinned code paths."""
    proc = subprocess.run([sys.executable, "-m", "style_tune.train.demo_base", str(out),
                           "--data", str(split_dir / "train.json"), "--steps", "3"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **demo_env(), "OMP_NUM_THREADS": str(threads)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def demo_base(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo_base") / "base"
    build_demo_base(out, split_dir, threads=1)
    return out


def test_cut_tokenizer_matches_the_full_one_on_the_data(demo_base: Path, split_dir: Path,
                                                        tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from style_tune.train.demo_base import vocabulary_texts

    full, cut = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(demo_base)
    assert 3_000 < len(cut) < 10_000 < len(full)
    for name in ("<|endoftext|>", "<|im_start|>", IM_END):
        assert cut.convert_ids_to_tokens(cut.convert_tokens_to_ids(name)) == name
    rows = [r["conversation"][0] for r in json.loads((split_dir / "train.json").read_text(encoding="utf-8"))]
    texts = vocabulary_texts(rows)  # the rows as ChatML (what training tokenizes) and the system texts
    for text in texts[:100] + texts[-10:]:
        full_tokens = full.convert_ids_to_tokens(full(text, add_special_tokens=False)["input_ids"])
        assert cut.convert_ids_to_tokens(cut(text, add_special_tokens=False)["input_ids"]) == full_tokens
    unseen = "Zebra量子纠缠🦓 naïve"  # not in the data: still encodes, byte by byte where needed
    assert cut.decode(cut(unseen, add_special_tokens=False)["input_ids"]) == unseen
    messages = [{"role": "system", "content": system_text("controllable", STYLES[0])},
                {"role": "user", "content": rows[0]["input"]}]
    assert cut.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        render_chatml(messages, add_generation_prompt=True)


def test_model_config_uses_the_cut_ids(demo_base: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tokenizer, config = AutoTokenizer.from_pretrained(demo_base), AutoConfig.from_pretrained(demo_base)
    generation = GenerationConfig.from_pretrained(demo_base)
    assert config.vocab_size >= len(tokenizer) and config.vocab_size % 64 == 0
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids(IM_END)
    assert tokenizer.convert_tokens_to_ids(IM_END) in generation.eos_token_id
    record = json.loads((demo_base / "pretraining.json").read_text(encoding="utf-8"))
    assert record["steps"] == 3 and record["vocabulary"] == len(tokenizer)


def test_the_stand_in_is_the_same_with_two_threads(demo_base: Path, split_dir: Path, tmp_path: Path) -> None:
    """docs/demo.md#reproducing-the-figures: with the demo's pinned code paths, threads change nothing."""
    out = tmp_path / "base"
    build_demo_base(out, split_dir, threads=2)
    one, two = (json.loads((d / "pretraining.json").read_text()) for d in (demo_base, out))
    assert (one["first_loss"], one["last_loss"]) == (two["first_loss"], two["last_loss"])
    assert (demo_base / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_the_pinned_code_path_is_the_one_torch_takes() -> None:
    """ATEN_CPU_CAPABILITY=avx2 holds torch to its AVX2 kernels also where the CPU has AVX-512 (there the
    default kernels give other weights: docs/demo.md); MKL_CBWR=AVX2 does the same for MKL."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **demo_env()})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "AVX2"
    assert demo_env() == {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def test_demo_steps_run_with_the_pinned_kernels_and_the_seed() -> None:
    proc = subprocess.run(["make", "-n", "demo-base", "DEMO_SEED=2", "DEMO_BASE=/nonexistent/base"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")})
    line = next(line for line in proc.stdout.splitlines() if "style_tune.train.demo_base" in line)
    assert line.startswith("MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1 ")
    assert "--seed 2" in proc.stdout
    _, work_dir, merged, args = make_vars("controllable", "DEMO_SEED=2")
    assert work_dir == "work_dirs/demo-controllable-seed2"
    assert merged == "models/tiny-qwen2.5-demo-controllable-seed2-merged"
    assert "randomness.seed=44" in args


def conversation_pairs(text: str) -> list[tuple[str, str]]:
    """The (user, reply) pairs of a ChatML text that holds user and assistant turns and nothing else."""
    blocks = re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", text, flags=re.S)
    assert "".join(chatml_block(role, content) for role, content in blocks) == text
    assert [role for role, _ in blocks] == ["user", "assistant"] * (len(blocks) // 2)
    return [(blocks[i][1], blocks[i + 1][1]) for i in range(0, len(blocks), 2)]


def test_pretraining_text_is_conversations_in_one_voice_one_reply_per_prompt(split_dir: Path) -> None:
    """The stand-in reads each training prompt with one of its replies (either style, about half each),
    with no system message or label: it cannot learn which style goes with which system text or label,
    and the other reply is left for the fine-tune. The exchanges come in conversations of up to
    CONVERSATION_TURNS, all in one style, regrouped each round: the base learns that a voice persists
    through a conversation, which is what the fine-tune has to tie to the system text."""
    from collections import Counter

    from style_tune.train.demo_base import CONVERSATION_TURNS, pretraining_texts, training_rows

    turns = training_rows(split_dir / "train.json")
    replies: dict[str, dict[str, str]] = {}
    for turn in turns:
        label, reply = split_label(turn["output"])
        replies.setdefault(turn["input"], {})[reply] = label
    wanted = 3 * len(replies) // CONVERSATION_TURNS  # three rounds at least
    texts = pretraining_texts(turns, seed=0, min_conversations=wanted)
    conversations = [text for text in texts if text.startswith("<|im_start|>")]
    assert len(conversations) >= wanted
    reply_of: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for text in conversations:
        pairs = conversation_pairs(text)
        assert 1 <= len(pairs) <= CONVERSATION_TURNS
        # one voice (a KeyError: a reply that is not one of the user's)
        assert len({replies[user][reply] for user, reply in pairs}) == 1
        for user, reply in pairs:
            assert split_label(reply)[0] is None
            assert reply_of.setdefault(user, reply) == reply  # the same one reply of a prompt, every round
            seen[user] += 1
    rounds = seen[turns[0]["input"]]
    assert rounds >= 3 and set(seen) == set(replies) and set(seen.values()) == {rounds}
    full = sum(len(conversation_pairs(text)) == CONVERSATION_TURNS for text in conversations)
    assert full >= len(conversations) - 2 * rounds  # a short one per style and round at most
    assert len(set(conversations)) > 0.9 * len(conversations)  # regrouped each round
    gentle = sum(replies[user][reply] == STYLES[0] for user, reply in reply_of.items()) / len(reply_of)
    assert 0.4 < gentle < 0.6
    assert pretraining_texts(turns, seed=0, min_conversations=wanted) == texts
    assert pretraining_texts(turns, seed=1, min_conversations=wanted) != texts


def test_pretraining_text_describes_each_style_in_plain_text(split_dir: Path) -> None:
    """The stand-in also reads what a real base knows about the styles: each style's description from
    the styles file, as plain documents, once a round (no chat turn, so no system text or label is
    paired with a reply). Each label word is in them: the tuned model can only write a label the base
    has read."""
    from style_tune.core.styles import load_styles
    from style_tune.train.demo_base import pretraining_texts, training_rows

    turns = training_rows(split_dir / "train.json")
    styles = list(load_styles())
    descriptions = [s.system for s in styles] + [s.prompt for s in styles]
    texts = pretraining_texts(turns, seed=0)  # one round
    assert all(text.startswith("<|im_start|>user") for text in texts[:-len(descriptions)])
    documents = texts[-len(descriptions):]
    assert documents == descriptions
    for document in documents:
        assert "<|im_start|>" not in document and IM_END not in document
    for style in STYLES:
        assert sum(style in document for document in documents) >= 2
    more = pretraining_texts(turns, seed=0, min_conversations=len(texts) * 2)
    assert more[-3 * len(descriptions):] == descriptions * 3


def test_pretraining_needs_the_label_split(split_dir: Path) -> None:
    """The styles of the replies come from their label lines: a row without one is a clear error."""
    from style_tune.train.demo_base import pretraining_texts, training_rows

    turns = training_rows(split_dir / "train.json")
    turns[5] = {**turns[5], "output": split_label(turns[5]["output"])[1]}
    with pytest.raises(SystemExit, match=r"training row 6 .*no style label line.*MODE=label"):
        pretraining_texts(turns)


def make_vars(mode: str, *more: str) -> tuple[str, str, str, str]:
    """The Makefile's demo settings for a MODE, read with --eval (`make -n demo` would run its sub-makes)."""
    show = "show: ; @echo '$(DEMO_CONFIG)|$(DEMO_WORK_DIR)|$(DEMO_MERGED)|$(DEMO_TRAIN_ARGS)'"
    proc = subprocess.run(["make", "-s", "--eval", show, "show", f"MODE={mode}", *more], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")})
    assert proc.returncode == 0, proc.stderr
    config, work_dir, merged, args = proc.stdout.strip().split("|")
    return config, work_dir, merged, args


@pytest.mark.parametrize("mode", ["label", "controllable"])
def test_demo_runs_the_xtuner_config_of_its_mode(mode: str) -> None:
    config, work_dir, merged, args = make_vars(mode)
    assert config == ("xtuner_configs/qwen2_5_tiny_lora_controllable_style_cpu.py" if mode == "controllable"
                      else "xtuner_configs/qwen2_5_tiny_lora_style_cpu.py")
    assert (work_dir, merged) == (f"work_dirs/demo-{mode}", f"models/tiny-qwen2.5-demo-{mode}-merged")
    assert args.startswith("--cfg-options train_cfg.max_iters=")


def test_demo_cfg_options_reach_the_config() -> None:
    """The demo's --cfg-options are ones mmengine applies to the CPU configs (a typo would be an error
    only at train time), and the schedule's end follows the iteration count."""
    import ast

    from mmengine.config import Config

    for mode in ("label", "controllable"):
        config, _, _, args = make_vars(mode)
        options = dict(item.split("=", 1) for item in args.split()[1:])
        values = {key: ast.literal_eval(value) for key, value in options.items()}
        cfg = Config.fromfile(str(REPO_ROOT / config))
        cfg.merge_from_dict(values)
        for key, value in values.items():
            node = cfg
            for part in key.split("."):
                node = node[int(part)] if part.isdigit() else node[part]
            assert node == value, key
        assert cfg.train_cfg.max_iters == cfg.param_scheduler[1].end
        # a style score at every save, about ten over the run, on the mode's validation split
        assert cfg.train_cfg.val_interval == cfg.default_hooks.checkpoint.interval
        assert cfg.train_cfg.max_iters // cfg.train_cfg.val_interval == 10
        assert cfg.val_dataloader.dataset.path == f"data/{mode}/val.json"
