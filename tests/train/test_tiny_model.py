"""Tests for style_tune/train/tiny_model.py: the offline stand-in for Qwen2.5-1.5B-Instruct.

The tokenizer must be the real Qwen2.5 one (ids checked against known encodings and against tiktoken
on the same qwen.tiktoken ranks), the chat template and generation config must be Qwen2.5's, the
model must load through the plain transformers Auto classes, and builds must be deterministic.
"""

from __future__ import annotations

import csv
import importlib.machinery
import importlib.util
import json
import os
import random
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO_ROOT / "style_tune" / "train" / "qwen2_5_1_5b_instruct"
CSV_PATH = REPO_ROOT / "style_data" / "style_chat_data.csv"

ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645
N_TOKENS = 151665  # 151,643 BPE ranks + 22 added tokens
VOCAB_SIZE = 151936  # the embedding rows (padded past the tokenizer)
DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
#: The pre-tokenizer split regex of Qwen2/2.5's tokenizer.json (and Qwen's tokenization_qwen.PAT_STR),
#: written out here so that the tiktoken comparison, which uses the builder's copy, cannot hide a typo.
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

#: Qwen2.5-1.5B-Instruct's parameter count (tied embeddings counted once): "1.54B" on its model card.
FULL_PARAMS = 1_543_714_304
FULL_SHAPES = dict(
    hidden_size=1536,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    intermediate_size=8960,
    tie_word_embeddings=True,
    vocab_size=VOCAB_SIZE,
)

#: Hand-made edge cases for the split regex, the byte-level BPE and the NFC normalizer.
EDGE_CASES = [
    "你好",
    "Hello world",
    "Hello, world! How's it going? I'M FINE, they'RE fine, we'd've",
    "don't DON'T 'sup 'S",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "a  b   c    d",
    "\t\ttabs\tand spaces \t mixed",
    "line1\nline2\n\nline4\n\n\n",
    "\n",
    "\n\n",
    " \n ",
    "\r\n",
    "windows\r\nline\r\nendings\r\n",
    "   ",
    " ",
    "0",
    "1234567890",
    "3.14159265358979 -42 +7 1e-10 0x1F 1,000,000",
    "２０２４年１２月３１日",  # full-width digits
    "第123期，共4567人，比例89.5%",
    "😀",
    "🌸✨💕🔥👍",
    "👍🏽👩🏻‍💻👨‍👩‍👧‍👦🏳️‍🌈🇨🇳🇺🇸",
    "emoji🌸in😀the中间",
    "，。！？；：“”‘’（）《》【】——……、",
    "!!!???...,,,;;;:::",
    "~`@#$%^&*()_+-=[]{}|\\<>/",
    "https://example.com/path?query=1&b=2#frag",
    "user@example.com",
    'def f(x):\n    return x ** 2  # square\n\nprint(f"{f(3)=}")\n',
    '{"key": [1, 2, 3], "中文": null}',
    "日本語のテキストです。カタカナとひらがな",
    "한국어 텍스트입니다",
    "Привет, мир! Ёжик",
    "مرحبا بالعالم",
    "Ελληνικά κείμενα",
    "नमस्ते दुनिया",
    "∑∫√∞≈≠≤≥ αβγ ℃ ½ ①②③",
    "Ünïcödé café naïve résumé Straße",
    "e\u0301 a\u0308 n\u0303",  # decomposed accents; NFC composes them
    "\u00a0nbsp\u3000ideographic space\u2003em space",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "\x00\x01\x7f control bytes",
    "A" * 300,
    "哈" * 100,
    "ha" * 200,
    "😂" * 30,
    "今天又加班到十点，腿都站麻了 ... but it's OK 👌 (真的)",
    "Mixed中English混合Text123数字456",
]

#: Strings that contain special tokens: tiktoken with allowed_special="all" vs the HF added tokens.
SPECIAL_CASES = [
    "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|endoftext|>more<|im_end|>",
    "<tool_call>\n{}\n</tool_call>",
    "<|fim_prefix|>def<|fim_suffix|>return<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>",
]


def load_tool() -> ModuleType:
    return importlib.import_module("style_tune.train.tiny_model")


def run_tool(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "style_tune.train.tiny_model", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def random_strings(n: int, seed: int = 0) -> list[str]:
    """Deterministic random strings over an alphabet that mixes every kind of character above."""
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list("的一是不了人我在有他这为之大来以个中上们到说时地也子就道要出会")
        + list("，。！？、：；“”（）…—")
        + list(" \t\n\r'\".,!?:;-_/\\()[]{}<>@#$%^&*+=|~`")
        + ["'s", "'ll", "'RE", "  ", "\n\n", "\r\n", " \n"]
        + list("😀🌸✨💕🔥👍🙏🎉") + ["👍🏽", "👩‍💻", "🇨🇳"]
        + list("éüñßøåÉÖ") + list("αβγдж") + list("あいうアイウ") + list("가나다")
    )
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(n)]


def corpus() -> list[str]:
    """The NFC-normalised comparison corpus: every CSV field, whole CSV lines, edge cases, random text."""
    with CSV_PATH.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    lines = CSV_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    texts = [field for row in rows for field in row] + lines[::5] + EDGE_CASES + random_strings(300)
    texts.append("".join(lines[:40]))  # one long multi-line document
    unique = list(dict.fromkeys(unicodedata.normalize("NFC", text) for text in texts))
    assert len(unique) >= 500
    return unique


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def tiktoken_encoding(tool: ModuleType):
    import tiktoken
    import tiktoken.load

    ranks = tiktoken.load.load_tiktoken_bpe(str(tool.qwen_tiktoken_path()))
    assert len(ranks) == 151_643 and sorted(ranks.values()) == list(range(151_643))
    special = {content: tool.FIRST_ADDED_ID + i for i, (content, _) in enumerate(tool.ADDED_TOKENS)}
    return tiktoken.Encoding(
        name="qwen", pat_str=tool.QWEN_PATTERN, mergeable_ranks=ranks, special_tokens=special
    )


# --- tokenizer ------------------------------------------------------------------------------------


def test_tokenizer_class_and_files(tiny_model_dir: Path, tokenizer) -> None:
    assert type(tokenizer).__name__ == "Qwen2TokenizerFast"
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "vocab.json", "merges.txt"):
        assert (tiny_model_dir / name).is_file(), name
    backend = json.loads((tiny_model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert backend["normalizer"] == {"type": "NFC"}
    assert backend["model"]["type"] == "BPE"
    split, byte_level = backend["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and split["pattern"] == {"Regex": QWEN2_SPLIT_REGEX}
    assert split["behavior"] == "Isolated"
    assert byte_level["type"] == "ByteLevel" and byte_level["add_prefix_space"] is False
    assert byte_level["use_regex"] is False


def test_split_regex_is_qwen2s(tool: ModuleType) -> None:
    assert tool.QWEN_PATTERN == QWEN2_SPLIT_REGEX


def test_special_tokens(tokenizer) -> None:
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        ENDOFTEXT, IM_START, IM_END,
    ]
    assert len(tokenizer) == N_TOKENS
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == IM_END
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == ENDOFTEXT
    assert tokenizer.bos_token is None and tokenizer.bos_token_id is None
    assert tokenizer.unk_token is None
    # every added token in Qwen2.5's order, one id each, and only the first 14 skipped as special
    added = tokenizer.added_tokens_decoder
    assert sorted(added) == list(range(ENDOFTEXT, N_TOKENS))
    assert [added[i].content for i in range(ENDOFTEXT, N_TOKENS)][-8:] == [
        "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
        "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
    ]
    assert [added[i].special for i in range(ENDOFTEXT, N_TOKENS)] == [True] * 14 + [False] * 8
    assert tokenizer("<|im_start|>user<|im_end|>", add_special_tokens=False)["input_ids"] == [
        IM_START, 872, IM_END,
    ]


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("你好", [108386]),
        ("Hello world", [9707, 1879]),
        ("user", [872]),
        ("assistant", [77091]),
        ("\n", [198]),
        (" ", [220]),
        ("2024年", [17, 15, 17, 19, 7948]),  # digits are split one by one
        (" 你好！\n\n", [220, 108386, 17701]),
    ],
)
def test_known_encodings(tokenizer, text: str, ids: list[int]) -> None:
    assert tokenizer.encode(text, add_special_tokens=False) == ids
    assert tokenizer(text)["input_ids"] == ids  # no BOS/EOS is added


def test_nfc_normalisation(tokenizer) -> None:
    decomposed = "cafe\u0301 nai\u0308ve"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    assert tokenizer.encode(decomposed) == tokenizer.encode(composed)


def test_agrees_with_tiktoken(tokenizer, tiktoken_encoding) -> None:
    texts = corpus()
    hf_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    tt_ids = tiktoken_encoding.encode_ordinary_batch(texts)
    mismatches = [case for case in zip(texts, hf_ids, tt_ids, strict=True) if case[1] != case[2]]
    assert not mismatches, f"{len(mismatches)}/{len(texts)} differ, first: {mismatches[0]!r}"


@pytest.mark.parametrize("text", SPECIAL_CASES)
def test_special_tokens_agree_with_tiktoken(tokenizer, tiktoken_encoding, text: str) -> None:
    assert tokenizer.encode(text, add_special_tokens=False) == tiktoken_encoding.encode(
        text, allowed_special="all"
    )


def test_round_trip(tokenizer) -> None:
    texts = corpus()
    assert any("🌸" in t for t in texts) and any("你" in t for t in texts)
    failures = [t for t in texts if tokenizer.decode(tokenizer.encode(t, add_special_tokens=False)) != t]
    assert not failures, f"{len(failures)} strings do not round-trip, first: {failures[0]!r}"


def test_round_trip_chinese_emoji(tokenizer) -> None:
    text = "今天又加班到十点，腿都站麻了🌸✨ 先开心一下嘛👍🏽，等着好消息哦！\n第二行：😂😂😂"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_decode_skips_special_tokens(tokenizer) -> None:
    ids = [IM_START, *tokenizer.encode("你好"), IM_END, ENDOFTEXT]
    assert tokenizer.decode(ids) == "<|im_start|>你好<|im_end|><|endoftext|>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "你好"


# --- chat template --------------------------------------------------------------------------------


def test_chat_template_is_qwen25(tiny_model_dir: Path, tokenizer) -> None:
    assert tokenizer.chat_template == (SPEC_DIR / "chat_template.jinja").read_text(encoding="utf-8")
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == tokenizer.chat_template


def test_chat_template_full_conversation(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "你是一个说话温柔的助手。"},
        {"role": "user", "content": "今天好累"},
        {"role": "assistant", "content": "辛苦啦，早点休息🌸"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\n你是一个说话温柔的助手。<|im_end|>\n"
        "<|im_start|>user\n今天好累<|im_end|>\n"
        "<|im_start|>assistant\n辛苦啦，早点休息🌸<|im_end|>\n"
    )
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    assert ids.count(IM_START) == 3 and ids.count(IM_END) == 3
    assert ids == tokenizer.encode(text, add_special_tokens=False)


def test_chat_template_default_system_and_generation_prompt(tokenizer) -> None:
    messages = [{"role": "user", "content": "你好"}]
    expected = (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == expected
    without = tokenizer.apply_chat_template(messages, tokenize=False)
    assert without == expected.removesuffix("<|im_start|>assistant\n")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert ids[0] == IM_START and ids[-3:] == [IM_START, 77091, 198]  # "assistant", "\n"


# --- config and model -----------------------------------------------------------------------------


def test_generation_config(tiny_model_dir: Path) -> None:
    from transformers import GenerationConfig

    generation = GenerationConfig.from_pretrained(tiny_model_dir)
    assert generation.eos_token_id == [IM_END, ENDOFTEXT]
    assert generation.pad_token_id == ENDOFTEXT
    assert generation.bos_token_id == ENDOFTEXT
    assert (generation.do_sample, generation.temperature, generation.top_p, generation.top_k) == (
        True, 0.7, 0.8, 20,
    )
    assert generation.repetition_penalty == 1.1


def test_config_keeps_real_model_fields(tool: ModuleType, tiny_model_dir: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.architectures == ["Qwen2ForCausalLM"]
    assert config.model_type == "qwen2"
    assert config.vocab_size == VOCAB_SIZE
    assert config.tie_word_embeddings is True
    assert config.eos_token_id == IM_END
    for key, value in tool.TINY_SHAPES.items():
        assert getattr(config, key) == value, key
    # everything that is not a shrunk shape is the real model's value
    real = json.loads((SPEC_DIR / "config.json").read_text(encoding="utf-8"))
    not_kept = set(tool.TINY_SHAPES) | {"torch_dtype", "transformers_version", "sliding_window"}
    for key, value in real.items():
        if key not in not_kept:
            assert getattr(config, key) == value, key


def test_model_loads_and_generates(tiny_model_dir: Path, tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.dtype == torch.float32
    assert model.get_input_embeddings().weight.shape == (VOCAB_SIZE, 64)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert all(torch.isfinite(p).all() for p in model.parameters())

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "你好"}], add_generation_prompt=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    assert out.shape == (1, prompt.shape[1] + 4)
    assert torch.equal(out[0, : prompt.shape[1]], prompt[0])
    assert int(out.max()) < VOCAB_SIZE
    with torch.no_grad():
        logits = model(prompt).logits
    assert logits.shape == (1, prompt.shape[1], VOCAB_SIZE)
    assert torch.isfinite(logits).all()


def test_full_size_uses_real_shapes(tool: ModuleType) -> None:
    """--size full builds the real Qwen2.5-1.5B-Instruct architecture (checked on the meta device)."""
    import torch

    real = json.loads((SPEC_DIR / "config.json").read_text(encoding="utf-8"))
    for key, value in FULL_SHAPES.items():
        assert real[key] == value, key
    assert real["architectures"] == ["Qwen2ForCausalLM"]

    with torch.device("meta"):
        model = tool.build_model("full", 0)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    for key, value in FULL_SHAPES.items():
        assert getattr(model.config, key) == value, key
    assert model.dtype == torch.bfloat16
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert sum(p.numel() for p in model.parameters()) == FULL_PARAMS
    assert model.generation_config.eos_token_id == [IM_END, ENDOFTEXT]


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_builds_identical_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "same-seed"
    out.mkdir()
    (out / "stale.txt").write_text("replaced by --force\n", encoding="utf-8")
    proc = run_tool(out, "--seed", "0", "--force")
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"

    files = sorted(p.name for p in tiny_model_dir.iterdir())
    assert sorted(p.name for p in out.iterdir()) == files  # --force replaced the old contents
    for name in files:
        assert (out / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    assert [p.name for p in tmp_path.iterdir()] == ["same-seed"]  # no temporary build dir left over


def test_seed_sets_the_weights(tool: ModuleType, tiny_model_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    saved = load_file(tiny_model_dir / "model.safetensors")
    again = tool.build_model("tiny", 0).state_dict()
    other = tool.build_model("tiny", 1).state_dict()
    assert set(saved) <= set(again) == set(other)
    assert all(torch.equal(saved[key], again[key]) for key in saved)
    # every randomly initialised tensor differs; the constant ones (norm weights 1, biases 0) do not
    random_init = sorted(key for key, value in saved.items() if value.unique().numel() > 1)
    differ = sorted(key for key in saved if not torch.equal(saved[key], other[key]))
    assert differ == random_init
    assert "model.embed_tokens.weight" in differ and len(differ) == 1 + 7 * 2  # embedding + 7 per layer


# --- bad input ------------------------------------------------------------------------------------


def test_existing_out_dir_is_left_untouched(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n", encoding="utf-8")
    proc = run_tool(out)
    assert proc.returncode == 0, proc.stderr
    assert "exists" in proc.stdout and "--force" in proc.stdout
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_missing_qwen_tiktoken_exits_with_one_line(tmp_path: Path) -> None:
    """A dashscope without resources/qwen.tiktoken: non-zero exit, one line on stderr, no output."""
    fake = tmp_path / "site" / "dashscope"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = tmp_path / "out" / "model"
    proc = run_tool(out, env=env)
    assert proc.returncode != 0
    message = proc.stderr.strip()
    assert "\n" not in message, message  # no traceback
    assert message.startswith("build_tiny_model:") and "qwen.tiktoken" in message
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary build dir was removed


def test_missing_dashscope(tool: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs) -> importlib.machinery.ModuleSpec | None:
        return None if name == "dashscope" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(tool.importlib.util, "find_spec", find_spec)
    with pytest.raises(SystemExit) as excinfo:
        tool.qwen_tiktoken_path()
    message = excinfo.value.code
    assert isinstance(message, str) and "\n" not in message  # str code: exit status 1
    assert "dashscope" in message and "not installed" in message
