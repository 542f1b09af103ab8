"""The prompt OpenCompass's HuggingFacewithChatTemplate builds, with OpenCompass's own code (0.5.4)
and the tiny model (real Qwen2.5 tokenizer) on the CPU.

For every shared case (tests/chat_cases.py) and turn, a dataset-style prompt (the case's system text as
a SYSTEM item in ``begin``, then a ``round`` of HUMAN and BOT items, as eval_configs/eval_style.py's
prompt template produces) goes through the model's real entry point
(``generate_from_template``: meta template -> messages -> tokenizer chat template -> ids -> generate).
The prompt text it tokenizes and the ids the model receives equal the case's hand-written
prompt (tests/chat_cases.py, which tests/train proves XTuner trains on) when the model config
has ``meta_template=OPENCOMPASS_META_TEMPLATE``. Without it (OpenCompass's stock Qwen
config) the prompt differs in both modes, and the mismatch is detected: a "\\n" is appended to every
user message, and in controllable mode the system text is Qwen's default instead of the style's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from chat_cases import CASE_IDS, CASES, Case

from style_tune.core.prompts import (
    ENDOFTEXT,
    IM_END,
    OPENCOMPASS_META_TEMPLATE,
    render_chatml,
    system_text,
)

REPO_ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="module")
def opencompass_model(tiny_model_dir: Path):
    """HuggingFacewithChatTemplate on the tiny model: ours (stock=False) or the stock config's."""
    from opencompass.models import HuggingFacewithChatTemplate

    built: dict[tuple, object] = {}

    def get(stock: bool = False):
        if stock not in built:
            built[stock] = HuggingFacewithChatTemplate(
                path=str(tiny_model_dir),
                model_kwargs=dict(device_map="cpu", torch_dtype="torch.float32"),
                meta_template=None if stock else OPENCOMPASS_META_TEMPLATE,
                max_seq_len=2048,
            )
        return built[stock]

    return get


def dataset_prompt(case: Case, k: int, *, system: bool = True):
    """Turn k as an OpenCompass dataset prompt: the case's system text (a SYSTEM item in ``begin``, as
    eval_configs/eval_style.py's template puts it; ``system=False``: none), then the earlier turns and
    the k-th question in a round."""
    from opencompass.utils.prompt import PromptList

    items: list[dict] = [dict(section="round", pos="begin")]
    if system:
        items[:0] = [dict(section="begin", pos="begin"),
                     dict(role="SYSTEM", fallback_role="HUMAN", prompt=system_text(case.mode, case.style)),
                     dict(section="begin", pos="end")]
    for turn, (user, _) in enumerate(case.turns[:k], start=1):
        items.append(dict(role="HUMAN", prompt=user))
        items.append(dict(role="BOT", prompt=case.output(turn) if turn < k else ""))
    items.append(dict(section="round", pos="end"))
    return PromptList(items)


@contextmanager
def recording(model) -> Iterator[dict[str, list]]:
    """Record the texts the model's tokenizer encodes and the ids its generate() receives."""
    seen: dict[str, list] = {"texts": [], "ids": []}
    encode, generate = model.tokenizer.batch_encode_plus, model.model.generate

    def spy_encode(texts, **kwargs):
        seen["texts"].extend(texts)
        return encode(texts, **kwargs)

    def spy_generate(**kwargs):
        seen["ids"].extend(row.tolist() for row in kwargs["input_ids"])
        return generate(**kwargs)

    model.tokenizer.batch_encode_plus, model.model.generate = spy_encode, spy_generate
    try:
        yield seen
    finally:
        del model.tokenizer.batch_encode_plus, model.model.generate


def check_opencompass_matches(case: Case, model) -> None:
    """Assert that OpenCompass prompts every turn of ``case`` exactly as the reference does."""
    tokenizer = model.tokenizer
    for k in range(1, len(case.turns) + 1):
        with recording(model) as seen:
            model.generate_from_template([dataset_prompt(case, k)], max_out_len=1)
        assert seen["texts"] == [case.prompt(k)]
        assert seen["ids"] == [tokenizer(case.prompt(k), add_special_tokens=False)["input_ids"]]
        messages = case.prompt_messages(k)
        assert seen["ids"][0] == tokenizer.apply_chat_template(messages, add_generation_prompt=True)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_opencompass_prompts_the_reference(case: Case, opencompass_model) -> None:
    check_opencompass_matches(case, opencompass_model())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_stock_config_prompt_is_detected_as_wrong(case: Case, opencompass_model) -> None:
    with pytest.raises(AssertionError):
        check_opencompass_matches(case, opencompass_model(stock=True))


def test_why_the_stock_config_is_wrong(opencompass_model) -> None:
    """OpenCompass's default meta template (round HUMAN, SYSTEM->HUMAN, BOT) adds an empty HUMAN item
    to every round, merged into the user message as a trailing "\\n"; and it sends no system message,
    so Qwen's template inserts its default system text (right for label mode only). Shown on prompts
    without a SYSTEM item."""
    stock = opencompass_model(stock=True)
    for case in CASES:
        with recording(stock) as seen:
            stock.generate_from_template([dataset_prompt(case, 1, system=False)], max_out_len=1)
        user = case.turns[0][0]
        assert seen["texts"] == [render_chatml([
            {"role": "system", "content": system_text("label")},
            {"role": "user", "content": user + "\n"},
        ], add_generation_prompt=True)]


def test_generation_stops_at_the_end_token_training_used(opencompass_model) -> None:
    model = opencompass_model()
    assert {IM_END, ENDOFTEXT} <= set(model.stop_words)
    assert model.tokenizer.eos_token == IM_END
