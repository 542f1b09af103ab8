"""style_tune/core/prompts.py's small functions, called directly, against hand-written expectations.

The label format is the style label alone on the first line, then the reply (output_text writes it,
split_label reads it back). What counts as a label is deliberately strict, so a metric built on
split_label cannot reward format drift: a label with more text on its line, or with a colon, is no
label; spaces around it and blank lines before it are allowed.
"""

from __future__ import annotations

import pytest
from chat_cases import GENTLE_SYSTEM, LABEL_SYSTEM, SNARKY_SYSTEM

from style_tune.core.prompts import (
    MODES,
    OPENCOMPASS_META_TEMPLATE,
    STYLE_SLUGS,
    STYLES,
    chat_template_file,
    chatml_block,
    lmdeploy_chat_template,
    output_text,
    render_chatml,
    resolve_style,
    split_label,
    system_text,
)


def test_the_names() -> None:
    assert STYLES == ("温柔", "毒舌")
    assert MODES == ("label", "controllable")
    assert STYLE_SLUGS == {"温柔": "gentle", "毒舌": "snarky"}


# --- split_label --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("温柔\n辛苦啦，早点休息", ("温柔", "辛苦啦，早点休息")),
        ("毒舌\n第一行\n第二行", ("毒舌", "第一行\n第二行")),
        # surrounding spaces (ASCII, full-width, CRLF) and blank lines before the label are allowed
        ("  温柔  \n  辛苦啦  ", ("温柔", "辛苦啦")),
        ("\u3000毒舌\u3000\r\n嘴：我可没答应过你。\r\n", ("毒舌", "嘴：我可没答应过你。")),
        ("\n\n温柔\n辛苦啦", ("温柔", "辛苦啦")),
        # a label with more text on its line is no label: the whole text is the reply
        ("温柔 辛苦啦，早点休息", (None, "温柔 辛苦啦，早点休息")),
        ("温柔辛苦啦", (None, "温柔辛苦啦")),
        ("毒舌：你也配？", (None, "毒舌：你也配？")),
        ("毒舌: 你也配？\n真的", (None, "毒舌: 你也配？\n真的")),
        # a colon after the label, alone on its line, is not the trained format either
        ("温柔：\n辛苦啦", (None, "温柔：\n辛苦啦")),
        ("温柔:\n辛苦啦", (None, "温柔:\n辛苦啦")),
        ("【温柔】\n辛苦啦", (None, "【温柔】\n辛苦啦")),
        # the label on a later line does not count
        ("辛苦啦\n温柔", (None, "辛苦啦\n温柔")),
        # an unknown style word, or the ASCII name, is no label
        ("gentle\n辛苦啦", (None, "gentle\n辛苦啦")),
        ("温柔的\n辛苦啦", (None, "温柔的\n辛苦啦")),
        # empty replies
        ("温柔", ("温柔", "")),
        ("毒舌\n", ("毒舌", "")),
        ("毒舌\n  \n", ("毒舌", "")),
        ("", (None, "")),
        ("   \n ", (None, "")),
        # a reply that is itself a style word, after the label
        ("温柔\n毒舌", ("温柔", "毒舌")),
    ],
)
def test_split_label(text: str, expected: tuple[str | None, str]) -> None:
    assert split_label(text) == expected


@pytest.mark.parametrize("style", STYLES)
def test_split_label_reads_back_what_output_text_writes(style: str) -> None:
    for reply in ("辛苦啦", "  两边有空格  ", "第一行\n第二行", "温柔 开头也是回复"):
        assert split_label(output_text("label", style, reply)) == (style, reply.strip())


# --- output_text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "style", "reply", "expected"),
    [
        ("label", "温柔", "辛苦啦", "温柔\n辛苦啦"),
        ("label", "毒舌", "嘴：我可没答应过你。", "毒舌\n嘴：我可没答应过你。"),
        ("label", "温柔", "  辛苦啦 \n", "温柔\n辛苦啦"),
        ("label", "毒舌", "第一行\n第二行", "毒舌\n第一行\n第二行"),
        ("controllable", "温柔", "辛苦啦", "辛苦啦"),
        ("controllable", "毒舌", " 嘴：我可没答应过你。\n", "嘴：我可没答应过你。"),
        ("controllable", "毒舌", "第一行\n第二行", "第一行\n第二行"),
    ],
)
def test_output_text(mode: str, style: str, reply: str, expected: str) -> None:
    assert output_text(mode, style, reply) == expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reply", ["", "   ", "\n\u3000\n"])
def test_output_text_refuses_an_empty_reply(mode: str, reply: str) -> None:
    with pytest.raises(ValueError, match="^empty reply: a training turn needs text after the style$"):
        output_text(mode, "温柔", reply)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("style", ["", "温柔 ", "gentle", "礼貌"])
def test_output_text_refuses_an_unknown_style(mode: str, style: str) -> None:
    with pytest.raises(ValueError, match=f"^unknown style {style!r}; use one of 温柔, 毒舌$"):
        output_text(mode, style, "辛苦啦")


def test_output_text_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"unknown mode 'chat'; use one of label, controllable"):
        output_text("chat", "温柔", "辛苦啦")


# --- system_text --------------------------------------------------------------------------------


def test_system_text() -> None:
    assert system_text("label") == LABEL_SYSTEM
    assert system_text("label", "毒舌") == LABEL_SYSTEM  # label mode: one system text for every style
    assert system_text("controllable", "温柔") == GENTLE_SYSTEM
    assert system_text("controllable", "毒舌") == SNARKY_SYSTEM


@pytest.mark.parametrize("style", [None, "gentle", "温柔 "])
def test_system_text_controllable_needs_a_known_style(style: str | None) -> None:
    with pytest.raises(ValueError, match=r"controllable mode needs a style, one of 温柔, 毒舌; got"):
        system_text("controllable", style)


def test_system_text_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"unknown mode 'chat'; use one of label, controllable"):
        system_text("chat", "温柔")


# --- resolve_style ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "style"),
    [("温柔", "温柔"), (" 毒舌 ", "毒舌"), ("gentle", "温柔"), ("Snarky", "毒舌"), (" GENTLE\n", "温柔")],
)
def test_resolve_style(name: str, style: str) -> None:
    assert resolve_style(name) == style


@pytest.mark.parametrize("name", ["polite", "", "gentle-ish", "温"])
def test_resolve_style_refuses_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown style .*; use one of 温柔 \(gentle\), 毒舌 \(snarky\)"):
        resolve_style(name)


# --- ChatML -------------------------------------------------------------------------------------


def test_chatml_block() -> None:
    assert chatml_block("user", "你好") == "<|im_start|>user\n你好<|im_end|>\n"


def test_render_chatml_with_and_without_the_generation_prompt() -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
    ]
    body = (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n"
    )
    assert render_chatml(messages) == body
    assert render_chatml(messages, add_generation_prompt=True) == body + "<|im_start|>assistant\n"
    assert render_chatml(messages[:1]) == "<|im_start|>system\nS<|im_end|>\n"


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], r"^a conversation must start with its system message \(see style_tune.core.prompts\)$"),
        ([{"role": "user", "content": "U"}], "must start with its system message"),
        ([{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}],
         r"message 1 has role 'assistant'; expected 'user'"),
        ([{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
          {"role": "user", "content": "U"}], r"message 2 has role 'user'; expected 'assistant'"),
        ([{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
          {"role": "assistant", "content": "A"}, {"role": "system", "content": "S"}],
         r"message 3 has role 'system'; expected 'user'"),
        ([{"role": "system", "content": "S"}, {"content": "U"}], r"message 1 has role None"),
    ],
)
def test_render_chatml_refuses_bad_conversations(messages: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_chatml(messages)


# --- generated front-end settings ---------------------------------------------------------------


def test_chat_template_files() -> None:
    assert chat_template_file("label") == "style_data/chat_template.json"
    assert chat_template_file("label", "温柔") == "style_data/chat_template.json"
    assert chat_template_file("controllable", "温柔") == "style_data/chat_template_controllable_gentle.json"
    assert chat_template_file("controllable", "毒舌") == "style_data/chat_template_controllable_snarky.json"
    with pytest.raises(ValueError, match="controllable mode needs a style"):
        chat_template_file("controllable")
    with pytest.raises(ValueError, match="unknown mode"):
        chat_template_file("chat", "温柔")


def test_lmdeploy_chat_template() -> None:
    chatml = {
        "system": "<|im_start|>system\n",
        "eosys": "<|im_end|>\n",
        "user": "<|im_start|>user\n",
        "eoh": "<|im_end|>\n",
        "assistant": "<|im_start|>assistant\n",
        "eoa": "<|im_end|>",
        "separator": "\n",
        "capability": "chat",
        "stop_words": ["<|im_end|>", "<|endoftext|>"],
    }
    assert lmdeploy_chat_template("label") == {
        "model_name": "style-tune-label", "meta_instruction": LABEL_SYSTEM, **chatml
    }
    assert lmdeploy_chat_template("controllable", "毒舌") == {
        "model_name": "style-tune-controllable-snarky", "meta_instruction": SNARKY_SYSTEM, **chatml
    }
    with pytest.raises(ValueError, match="controllable mode needs a style"):
        lmdeploy_chat_template("controllable")


def test_opencompass_meta_template_keeps_the_system_item_a_system_message() -> None:
    assert OPENCOMPASS_META_TEMPLATE == {
        "round": [
            {"role": "HUMAN", "api_role": "HUMAN"},
            {"role": "BOT", "api_role": "BOT", "generate": True},
        ],
        "reserved_roles": [{"role": "SYSTEM", "api_role": "SYSTEM"}],
    }
