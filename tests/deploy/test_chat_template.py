"""lmdeploy's rendering of style_data/chat_template*.json, with lmdeploy's own code (the deploy env's
version) and the tiny model's real Qwen2.5 tokenizer.

For every shared case (tests/chat_cases.py) and turn, ``ChatTemplateConfig.from_json(FILE)
.chat_template().messages2prompt(messages)`` equals the case's hand-written prompt (tests/chat_cases.py,
which tests/train proves XTuner trains on), as text and as the token ids lmdeploy's
tokenizer feeds the engine:
- as `lmdeploy chat` sends it: no system message, the template's meta_instruction supplies it;
- as `lmdeploy serve api_server` gets it from a client that sends the system message, which is
  how a client picks the style in controllable mode (any style's template renders it the same).
The stop words and eos ids end a reply at the <|im_end|> training ended it with. A wrong template
(no system block, lmdeploy's default template in controllable mode) is detected as a mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chat_cases import CASE_IDS, CASES, Case
from lmdeploy.model import MODELS, ChatTemplateConfig

from style_tune.core.prompts import (
    ENDOFTEXT,
    IM_END,
    LMDEPLOY_TEMPLATE_KEYS,
    STYLES,
    chat_template_file,
    lmdeploy_chat_template,
)

REPO_ROOT = Path(__file__).resolve().parents[2]



#: lmdeploy's own template names, before any test registers a JSON template's model_name.
BUILTIN_TEMPLATES = frozenset(MODELS.module_dict)
TEMPLATE_SPECS = [("label", None)] + [("controllable", style) for style in STYLES]


def load_template(path: Path):
    """The chat template object lmdeploy builds from a --chat-template file."""
    template = ChatTemplateConfig.from_json(str(path)).chat_template
    return template() if callable(template) else template  # a method in lmdeploy 0.18, a property before


def case_template(case: Case):
    return load_template(REPO_ROOT / chat_template_file(case.mode, case.style))  # label mode: one file


@pytest.fixture(scope="module")
def lm_tokenizer(tiny_model_dir: Path):
    from lmdeploy.tokenizer import Tokenizer

    return Tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def check_lmdeploy_matches(case: Case, template, lm_tokenizer, hf_tokenizer, *, with_system: bool) -> None:
    """Assert that lmdeploy renders and tokenizes every turn of ``case`` as the reference does."""
    for k in range(1, len(case.turns) + 1):
        prompt = template.messages2prompt(case.prompt_messages(k, with_system=with_system))
        assert prompt == case.prompt(k)
        ids = lm_tokenizer.encode(prompt, add_bos=True)  # what lmdeploy's serving path feeds the engine
        assert ids == hf_tokenizer(case.prompt(k), add_special_tokens=False)["input_ids"]
        assert ids == hf_tokenizer.apply_chat_template(case.prompt_messages(k), add_generation_prompt=True)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_lmdeploy_chat_renders_the_reference(case: Case, lm_tokenizer, hf_tokenizer) -> None:
    check_lmdeploy_matches(case, case_template(case), lm_tokenizer, hf_tokenizer, with_system=False)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_api_server_requests_with_the_system_message_render_the_reference(
    case: Case, lm_tokenizer, hf_tokenizer
) -> None:
    check_lmdeploy_matches(case, case_template(case), lm_tokenizer, hf_tokenizer, with_system=True)


@pytest.mark.parametrize("case", [case for case in CASES if case.mode == "controllable"],
                         ids=[case.id for case in CASES if case.mode == "controllable"])
def test_the_system_message_picks_the_style_whatever_the_served_template(
    case: Case, lm_tokenizer, hf_tokenizer
) -> None:
    for style in STYLES:
        template = load_template(REPO_ROOT / chat_template_file("controllable", style))
        check_lmdeploy_matches(case, template, lm_tokenizer, hf_tokenizer, with_system=True)


@pytest.mark.parametrize(("mode", "style"), TEMPLATE_SPECS)
def test_template_files_are_portable_and_not_builtin_names(mode: str, style: str | None) -> None:
    data = json.loads((REPO_ROOT / chat_template_file(mode, style)).read_text(encoding="utf-8"))
    assert data == lmdeploy_chat_template(mode, style)
    assert set(data) <= set(LMDEPLOY_TEMPLATE_KEYS)
    assert set(data) <= set(ChatTemplateConfig.__dataclass_fields__)
    assert data["model_name"] not in BUILTIN_TEMPLATES


def test_stop_words_and_eos_end_a_reply_where_training_ended_it(tiny_model_dir: Path, lm_tokenizer) -> None:
    from lmdeploy.messages import GenerationConfig
    from lmdeploy.utils import _stop_words, get_hf_gen_cfg

    im_end = lm_tokenizer.model.model.convert_tokens_to_ids(IM_END)
    endoftext = lm_tokenizer.model.model.convert_tokens_to_ids(ENDOFTEXT)
    for mode, style in TEMPLATE_SPECS:
        template = load_template(REPO_ROOT / chat_template_file(mode, style))
        # as lmdeploy's engine turns the template's stop words into ids (serve/core/async_engine.py) ...
        stop_ids = _stop_words(template.stop_words, lm_tokenizer)[0][0].tolist()
        assert set(stop_ids) == {im_end, endoftext}
        # ... and adds the tokenizer's eos and the model's generation_config eos ids
        generation = GenerationConfig(stop_token_ids=stop_ids)
        generation.update_from_hf_gen_cfg(get_hf_gen_cfg(str(tiny_model_dir)), lm_tokenizer.eos_token_id)
        assert set(generation.stop_token_ids) == {im_end, endoftext}
        # every reply in the history is closed with <|im_end|> then "\n", as XTuner trained it
        assert template.eoa + template.separator == f"{IM_END}\n"


def test_a_wrong_template_is_detected(tmp_path: Path, tiny_model_dir: Path, lm_tokenizer, hf_tokenizer):
    from lmdeploy.model import get_chat_template

    # lmdeploy's own default for the model (`lmdeploy chat MERGED` without --chat-template): from 0.10
    # the tokenizer's template, which inserts Qwen's default system text
    default = get_chat_template(str(tiny_model_dir))
    for case in CASES:
        right = lmdeploy_chat_template(case.mode, case.style)
        wrong = {
            # no system block at all: what XTuner trained on for the article's rows
            "no-system-block": {**right, "meta_instruction": None, "system": "", "eosys": ""},
            # meta_instruction null but ChatML system markers: lmdeploy writes an empty system block
            "null-meta-instruction": {**right, "meta_instruction": None},
        }
        for name, data in wrong.items():
            path = tmp_path / f"{case.id}-{name}.json"
            path.write_text(json.dumps({**data, "model_name": f"style-tune-test-{name}"}, ensure_ascii=False))
            template = load_template(path)
            with pytest.raises(AssertionError):
                check_lmdeploy_matches(case, template, lm_tokenizer, hf_tokenizer, with_system=False)
            if name == "null-meta-instruction":
                empty = template.messages2prompt(case.prompt_messages(1, with_system=False))
                assert empty.startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n")
        # the default is right for label mode only
        if case.mode == "label":
            check_lmdeploy_matches(case, default, lm_tokenizer, hf_tokenizer, with_system=False)
        else:
            with pytest.raises(AssertionError):
                check_lmdeploy_matches(case, default, lm_tokenizer, hf_tokenizer, with_system=False)
