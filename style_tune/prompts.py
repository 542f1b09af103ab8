"""The conversation format, defined once.

The split tool writes these texts into every training row, the XTuner configs use them for the
chat hook's ``SYSTEM``, and the chat templates / evaluation configs are generated from them, so
the prompt a model is trained on is the prompt it is served with.
"""

from __future__ import annotations

#: The style labels the dataset uses (column ``style`` of the CSV).
STYLES: tuple[str, ...] = ("温柔", "毒舌")

#: Data formats. ``seed``: the seed article's format, the reply starts with the style label on its
#: own line. ``controllable``: the system message names the style, the reply is the text alone.
MODES: tuple[str, ...] = ("seed", "controllable")

#: The system text that stock Qwen2.5 front ends (its tokenizer chat template, lmdeploy's built-in
#: qwen2d5 template) insert when the user gives none. Seed-mode rows carry it explicitly, so
#: training sees exactly the prompt those front ends build at inference.
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

#: Controllable mode: one instruction per style; the user picks the style with the system message.
STYLE_SYSTEMS: dict[str, str] = {
    "温柔": "你是一个温柔的聊天伙伴。请用温柔的风格回复用户：语气温暖体贴，多安慰和鼓励，话题保持不变。",
    "毒舌": "你是一个毒舌的聊天伙伴。请用毒舌的风格回复用户：机智调侃、幽默吐槽，不人身攻击，话题保持不变。",
}


def system_text(mode: str, style: str | None = None) -> str:
    """The system message for a row (training) or a conversation (inference)."""
    if mode == "seed":
        return QWEN_DEFAULT_SYSTEM
    if mode == "controllable":
        if style not in STYLE_SYSTEMS:
            raise ValueError(f"controllable mode needs a style, one of {', '.join(STYLES)}; got {style!r}")
        return STYLE_SYSTEMS[style]
    raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")


def output_text(mode: str, style: str, reply: str) -> str:
    """The assistant turn the model learns: ``style\\nreply`` in seed mode, the reply alone otherwise."""
    if mode == "seed":
        return f"{style}\n{reply}"
    if mode == "controllable":
        return reply
    raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")


def split_label(text: str) -> tuple[str | None, str]:
    """Split a seed-mode reply into (style label or None, reply text).

    The label counts only when the first line, trimmed, is exactly one of :data:`STYLES`.
    """
    first, sep, rest = text.lstrip().partition("\n")
    label = first.strip()
    if label in STYLES:
        return label, rest.strip()
    return None, text.strip()
