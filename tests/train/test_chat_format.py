"""The chat format in the train toolchain, with the tiny model's real Qwen2.5 tokenizer.

For every shared case (tests/chat_cases.py: 1 and 2 turns, seed and controllable mode):
- what XTuner trains on, built by XTuner's own dataset code from the main config's template
  (template_map_fn_factory + encode_fn), decoded: each turn's prompt part equals the case's
  hand-written prompt (tests/chat_cases.py) and the merged model's tokenizer chat template
  (apply_chat_template(..., add_generation_prompt=True)), as text and as token ids; each output part
  is the reply plus <|im_end|>;
- the loss mask (labels != -100) covers exactly the replies and their <|im_end|>, nothing else;
- that <|im_end|> is what ends generation: eos of the tokenizer and generation config, XTuner's stop
  words, lmdeploy's and OpenCompass's (tests/deploy, tests/eval);
- `make chat-cpu` (XTuner's chat) runs on the tiny model and asks it exactly the reference prompts;
- the style score at every save (style_tune/train/style_score.py) asks the reference prompts, as text
  and as token ids, exactly the prompt part of XTuner's encoding of the same row, with the system texts
  of the definition;
- a training row without its system text is detected as a mismatch.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
from chat_cases import CASE_IDS, CASES, LABEL_SYSTEM, Case

from style_tune.core.prompts import (
    ENDOFTEXT,
    IM_END,
    STOP_WORDS,
    STYLES,
    XTUNER_PROMPT_TEMPLATE,
    system_text,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_CONFIG = REPO_ROOT / "xtuner_configs" / "qwen2_5_1_5b_instruct_lora_int8_style_e3.py"



IGNORE_INDEX = -100


@pytest.fixture(scope="module")
def config():
    from mmengine.config import Config

    return Config.fromfile(str(MAIN_CONFIG))


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    """The tokenizer as the config loads it (and as a merge copies it into the merged model)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir, trust_remote_code=False, padding_side="right")


def xtuner_encode(row: dict, config, tokenizer) -> tuple[list[int], list[int]]:
    """input_ids and labels of one training row, by XTuner's own dataset functions."""
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.dataset.utils import encode_fn

    dataset = config.train_dataloader.dataset
    example = template_map_fn_factory(template=dataset.template_map_fn.template)(copy.deepcopy(row))
    encoded = encode_fn(example, tokenizer, max_length=dataset.max_length, input_ids_with_output=True)
    return encoded["input_ids"], encoded["labels"]


def label_spans(labels: list[int]) -> list[tuple[int, int]]:
    """The [start, end) runs of trained positions (labels != -100)."""
    spans, start = [], None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            spans.append((start, i))
            start = None
    return spans


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_training_matches(case: Case, row: dict, config, tokenizer) -> None:
    """Assert that XTuner's encoding of ``row`` is the reference conversation of ``case``."""
    input_ids, labels = xtuner_encode(row, config, tokenizer)
    assert len(input_ids) < config.max_length, "a case must not be truncated"
    im_end, newline = tokenizer.convert_tokens_to_ids(IM_END), ids_of(tokenizer, "\n")
    spans = label_spans(labels)
    assert len(spans) == len(case.turns), f"{len(spans)} trained spans for {len(case.turns)} replies"
    for k, (start, end) in enumerate(spans, start=1):
        # input part: the prompt of turn k, as text and as token ids
        prompt_ids = input_ids[:start]
        assert tokenizer.decode(prompt_ids) == case.prompt(k)
        assert prompt_ids == ids_of(tokenizer, case.prompt(k))
        # output part: the reply plus <|im_end|>, all of it trained
        assert tokenizer.decode(input_ids[start:end]) == case.output(k) + IM_END
        assert labels[start:end] == input_ids[start:end]
        assert input_ids[end - 1] == im_end
        # then the separator, not trained
        assert input_ids[end:end + len(newline)] == newline
    trained = {i for start, end in spans for i in range(start, end)}
    assert all(label == IGNORE_INDEX for i, label in enumerate(labels) if i not in trained)
    # the whole row is the reference conversation (so the pieces tokenize as the whole text does)
    assert tokenizer.decode(input_ids) == case.text()
    assert input_ids == ids_of(tokenizer, case.text())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_xtuner_trains_on_the_reference_conversation(case: Case, config, tokenizer) -> None:
    check_training_matches(case, case.xtuner_row(), config, tokenizer)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_merged_tokenizer_template_renders_the_reference(case: Case, tokenizer) -> None:
    for k in range(1, len(case.turns) + 1):
        messages = case.prompt_messages(k)
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == case.prompt(k)
        assert tokenizer.apply_chat_template(messages, add_generation_prompt=True) == ids_of(tokenizer, text)
    whole = tokenizer.apply_chat_template(case.messages(), tokenize=False)
    assert whole == case.text()


def test_a_row_without_its_system_text_is_detected(config, tokenizer) -> None:
    """The mismatch the one definition prevents: a row without `system` (the article's rows)."""
    for case in CASES:
        row = case.xtuner_row()
        del row["conversation"][0]["system"]
        with pytest.raises(AssertionError):
            check_training_matches(case, row, config, tokenizer)
        # and a conversation without a system message gets Qwen's default one from the tokenizer:
        # right for label mode only, which is why label-mode rows carry exactly that text
        text = tokenizer.apply_chat_template(case.prompt_messages(1, with_system=False), tokenize=False,
                                             add_generation_prompt=True)
        assert (text == case.prompt(1)) == (case.mode == "label")


def test_the_config_trains_with_the_one_definition(config) -> None:
    from xtuner.utils import PROMPT_TEMPLATE

    assert dict(config.prompt_template) == dict(PROMPT_TEMPLATE[XTUNER_PROMPT_TEMPLATE])
    assert dict(config.train_dataloader.dataset.template_map_fn.template) == dict(config.prompt_template)
    assert system_text("label") == LABEL_SYSTEM


ONE_TURN = [case for case in CASES if len(case.turns) == 1]


def val_prompts(case: Case, tokenizer, tmp_path: Path):
    """The style score's prompts (StyleValPrompts) of a validation split holding the case's row."""
    from style_tune.train.style_score import StyleValPrompts

    (tmp_path / "val.json").write_text(json.dumps([case.xtuner_row()], ensure_ascii=False), encoding="utf-8")
    return StyleValPrompts(str(tmp_path / "val.json"), tokenizer)


@pytest.mark.parametrize("case", ONE_TURN, ids=[case.id for case in ONE_TURN])
def test_the_style_score_asks_the_reference_prompt(case: Case, config, tokenizer, tmp_path: Path) -> None:
    """What the model answers at every save is what it trains on and is served with: the case's prompt, as
    text and as token ids, and the prompt part of XTuner's encoding of the row; controllable mode asks it in
    every style, each with its own system text."""
    prompts = val_prompts(case, tokenizer, tmp_path)
    (sample,) = [s for s in prompts.samples if s["requested_style"] in ("", case.style)]
    assert sample["prompt"] == case.prompt(1)
    assert sample["input_ids"] == ids_of(tokenizer, case.prompt(1))
    input_ids, labels = xtuner_encode(case.xtuner_row(), config, tokenizer)
    assert sample["input_ids"] == input_ids[:label_spans(labels)[0][0]]
    asked = {s["requested_style"]: s["prompt"] for s in prompts.samples}
    if case.mode == "controllable":
        assert sorted(asked) == sorted(STYLES)
        for style, prompt in asked.items():
            assert prompt == case.prompt(1).replace(case.system, system_text("controllable", style))
    else:
        assert list(asked) == [""]


@pytest.mark.parametrize(("case", "key", "attribute"), [
    (next(c for c in ONE_TURN if c.mode == "label"), None, "QWEN_DEFAULT_SYSTEM"),
    (next(c for c in ONE_TURN if c.mode == "controllable"), "温柔", "STYLE_SYSTEMS"),
    (next(c for c in ONE_TURN if c.mode == "controllable"), "毒舌", "STYLE_SYSTEMS"),
], ids=["label", "controllable-gentle", "controllable-snarky"])
def test_the_style_score_s_system_texts_come_from_the_definition(case: Case, key: str | None, attribute: str,
                                                                tokenizer, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Change the definition (style_tune.core.prompts) and the validation prompts follow: a copy of the row's
    own text, or a literal in the code, would pass the test above but fails this one."""
    import style_tune.core.prompts as prompts

    marker = f"MARKER-{attribute}-{key}"
    if key is None:
        monkeypatch.setattr(prompts, attribute, marker)
    else:
        monkeypatch.setitem(getattr(prompts, attribute), key, marker)
    samples = val_prompts(case, tokenizer, tmp_path).samples
    asked = {s["requested_style"] or None: s["prompt"] for s in samples}
    assert asked[key].startswith(f"<|im_start|>system\n{marker}<|im_end|>\n"), asked


def test_replies_end_where_training_ended_them(config, tiny_model_dir: Path, tokenizer) -> None:
    from transformers import GenerationConfig

    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    endoftext = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    # every trained reply ends with <|im_end|> (SUFFIX, counted as the eos: no extra eos token)
    assert config.prompt_template.SUFFIX == IM_END and config.prompt_template.SUFFIX_AS_EOS is True
    for case in CASES:
        input_ids, labels = xtuner_encode(case.xtuner_row(), config, tokenizer)
        assert [input_ids[end - 1] for _, end in label_spans(labels)] == [im_end] * len(case.turns)
    # ... and <|im_end|> stops generation: transformers (generation config, tokenizer eos), xtuner chat
    generation = GenerationConfig.from_pretrained(tiny_model_dir)
    assert im_end in generation.eos_token_id and endoftext in generation.eos_token_id
    assert tokenizer.eos_token_id == im_end
    assert list(config.prompt_template.STOP_WORDS) == list(STOP_WORDS)


# --- make chat-cpu: XTuner's chat on the CPU --------------------------------------------------------

#: Wraps transformers' generate in the `xtuner chat` process: records each prompt's token ids and
#: answers the turns that have a scripted reply with it (so later prompts are known exactly); a
#: turn without one (null) is generated by the model for real (8 tokens).
SCRIPTED_GENERATE = '''
import json, os
try:
    import torch
    from transformers.generation.utils import GenerationMixin
except ImportError:  # the launcher's own python3 has neither
    GenerationMixin = None
if GenerationMixin is not None:
    record, replies = os.environ["CHAT_RECORD"], json.loads(os.environ["CHAT_REPLIES"])
    real_generate = GenerationMixin.generate

    def generate(self, inputs=None, streamer=None, **kwargs):
        with open(record, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(inputs[0].tolist()) + "\\n")
        with open(record, encoding="utf-8") as handle:
            turn = len(handle.readlines())
        if replies[turn - 1] is None:
            # a real reply, kept short (the random tiny model rarely ends one by itself)
            return real_generate(self, inputs=inputs, streamer=streamer, max_new_tokens=8, **kwargs)
        reply = torch.tensor([replies[turn - 1]], dtype=inputs.dtype)
        if streamer is not None:
            streamer.put(inputs)
            streamer.put(reply)
            streamer.end()
        return torch.cat([inputs, reply], dim=1)

    GenerationMixin.generate = generate
'''


def test_chat_cpu_runs_on_the_tiny_model_with_the_reference_prompts(
    tiny_model_dir: Path, tokenizer, tmp_path: Path
) -> None:
    """`make chat-cpu` with scripted input: two turns answered with the case's replies, then a third
    the tiny model answers for real; every prompt XTuner's chat builds is the reference prompt."""
    case = next(case for case in CASES if case.mode == "controllable" and len(case.turns) == 2)
    last_question = "你好"
    (tmp_path / "sitecustomize.py").write_text(SCRIPTED_GENERATE, encoding="utf-8")
    record = tmp_path / "prompts.jsonl"
    replies = [ids_of(tokenizer, case.output(k) + IM_END) for k in (1, 2)] + [None]
    stdin = "".join(f"{user}\n\n" for user, _ in case.turns) + f"{last_question}\n\nEXIT\n\n"
    proc = subprocess.run(
        ["make", "chat-cpu", f"MODEL={tiny_model_dir}", "MODE=controllable", f"STYLE={case.style}"],
        cwd=REPO_ROOT, input=stdin, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MAKEFLAGS": "", "PYTHONPATH": str(tmp_path), "CHAT_RECORD": str(record),
             "CHAT_REPLIES": json.dumps(replies)},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert f"Load LLM from {tiny_model_dir}" in proc.stdout and "Log: Exit!" in proc.stdout
    assert "--prompt-template qwen_chat --system" in proc.stdout
    prompts = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    expected = [case.prompt(1), case.prompt(2),
                f"{case.text()}<|im_start|>user\n{last_question}<|im_end|>\n<|im_start|>assistant\n"]
    assert len(prompts) == len(expected)
    for prompt_ids, text in zip(prompts, expected, strict=True):
        assert tokenizer.decode(prompt_ids) == text
        assert prompt_ids == ids_of(tokenizer, text)
