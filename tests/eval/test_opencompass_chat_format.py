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


# ------------------------------------------------------------------------------ make eval-retention
#: A FewCLUE bustm row and the prompt OpenCompass's FewCLUE_bustm_gen config asks with it, by hand.
BUSTM_ROW = {"sentence1": "今天北京的天气怎么样", "sentence2": "北京今天天气如何", "label": "1"}
BUSTM_PROMPT = ("语句一：“今天北京的天气怎么样”\n语句二：“北京今天天气如何”\n"
                "请判断语句一和语句二说的是否是一个意思？\nA. 无关\nB. 相关\n请从“A”，“B”中进行选择。\n答：")


@pytest.mark.parametrize("mode", ["label", "controllable"])
def test_retention_entries_prompt_their_training_format(mode: str, tiny_model_dir: Path, monkeypatch) -> None:
    """eval_configs/retention.py: every entry's model, built by OpenCompass from the config, asks
    eval-select's FewCLUE prompt (the dataset config's own template on a row) as the user message, after
    the entry's system text: each style's for a controllable model, label mode's for a label model, none
    for the base and the `none` entry (Qwen's template then writes its default, which is label mode's
    text: a label model's training format is the no-system prompt, asked once)."""
    from chat_cases import GENTLE_SYSTEM, LABEL_SYSTEM, SNARKY_SYSTEM
    from mmengine.config import Config
    from opencompass.openicl.icl_prompt_template import PromptTemplate
    from opencompass.utils.build import build_model_from_cfg

    monkeypatch.setenv("RETENTION_BASE", str(tiny_model_dir))
    monkeypatch.setenv("RETENTION_TUNED", f"t={tiny_model_dir}:{mode}")
    monkeypatch.setenv("RETENTION_DEVICE", "cpu")
    cfg = Config.fromfile(str(REPO_ROOT / "eval_configs" / "retention.py"))
    select = Config.fromfile(str(REPO_ROOT / "eval_configs" / "select_models.py"))
    assert cfg.datasets == select.datasets  # eval-select's datasets and prompts, as they are
    bustm = next(d for d in cfg.datasets if d["abbr"] == "bustm-dev")
    template = {k: v for k, v in bustm["infer_cfg"]["prompt_template"].items() if k != "type"}
    prompt = PromptTemplate(**template).generate_item(BUSTM_ROW)
    expected_system = {"base": LABEL_SYSTEM, "t@none": LABEL_SYSTEM, "t@label": LABEL_SYSTEM,
                       "t@gentle": GENTLE_SYSTEM, "t@snarky": SNARKY_SYSTEM}
    abbrs = [m["abbr"] for m in cfg.models]
    assert abbrs == (["base", "t@label"] if mode == "label" else ["base", "t@gentle", "t@snarky", "t@none"])
    for model_cfg in cfg.models:
        model = build_model_from_cfg(model_cfg)
        with recording(model) as seen:
            model.generate_from_template([prompt], max_out_len=1)
        text = (f"<|im_start|>system\n{expected_system[model_cfg['abbr']]}<|im_end|>\n"
                f"<|im_start|>user\n{BUSTM_PROMPT}<|im_end|>\n<|im_start|>assistant\n")
        assert seen["texts"] == [text], model_cfg["abbr"]
        assert seen["ids"] == [model.tokenizer(text, add_special_tokens=False)["input_ids"]]
        sent_system = model_cfg["meta_template"].get("begin", {}).get("prompt")
        no_system = model_cfg["abbr"] in ("base", "t@none")
        assert sent_system == (None if no_system else expected_system[model_cfg["abbr"]])
