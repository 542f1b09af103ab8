"""The conversation format, defined once.

The split tool writes these texts into every training row, the training's style score
(style_tune/train/style_score.py) renders its validation prompts with them, and the chat templates /
evaluation configs are generated from them, so the prompt a model is trained on is the prompt it is
validated and served with. The styles themselves (labels, ASCII names, system texts) come from the
styles file, style_data/styles.json (:mod:`style_tune.core.styles`; ``STYLE_TUNE_STYLES=FILE`` points
every step at another one).
"""

from __future__ import annotations

from style_tune.core.styles import load_styles

_STYLE_SET = load_styles()

#: The style labels the dataset uses (column ``style`` of the CSV), in the styles file's order.
STYLES: tuple[str, ...] = _STYLE_SET.labels

#: Data formats. ``label``: the article's format, the reply starts with the style label on its
#: own line. ``controllable``: the system message names the style, the reply is the text alone.
MODES: tuple[str, ...] = ("label", "controllable")

#: The system text that stock Qwen2.5 front ends (its tokenizer chat template, lmdeploy's built-in
#: qwen2d5 template) insert when the user gives none. Label-mode rows carry it explicitly, so
#: training sees exactly the prompt those front ends build at inference.
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

#: Controllable mode: one instruction per style; the user picks the style with the system message.
STYLE_SYSTEMS: dict[str, str] = {style.label: style.system for style in _STYLE_SET}


def system_text(mode: str, style: str | None = None) -> str:
    """The system message for a row (training) or a conversation (inference)."""
    if mode == "label":
        return QWEN_DEFAULT_SYSTEM
    if mode == "controllable":
        if style not in STYLE_SYSTEMS:
            raise ValueError(f"controllable mode needs a style, one of {', '.join(STYLES)}; got {style!r}")
        return STYLE_SYSTEMS[style]
    raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")


def output_text(mode: str, style: str, reply: str) -> str:
    """The assistant turn the model learns: ``style\\nreply`` in label mode, the reply alone otherwise.

    The reply is trimmed (as the split tool trims CSV cells); an empty one, or a style that is not
    one of :data:`STYLES`, is refused: either would teach the model a turn no reader can parse.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {', '.join(STYLES)}")
    text = reply.strip()
    if not text:
        raise ValueError("empty reply: a training turn needs text after the style")
    return f"{style}\n{text}" if mode == "label" else text


def split_label(text: str) -> tuple[str | None, str]:
    """Split a label-mode reply into (style label or None, reply text), both trimmed.

    The label counts only when the first non-blank line, trimmed, is exactly one of :data:`STYLES`,
    the format :func:`output_text` trains. So ``" 温柔 \\n回复"`` has the label 温柔, while a label
    with more text on its line (``"温柔 回复"``, ``"温柔：回复"``) or a colon after it (``"温柔:\\n回复"``)
    is no label: the whole text is the reply. A label alone gives an empty reply.
    """
    first, _, rest = text.lstrip().partition("\n")
    label = first.strip()
    if label in STYLES:
        return label, rest.strip()
    return None, text.strip()


# ---------------------------------------------------------------------------------------------
# The chat format: ChatML, as Qwen2.5's tokenizer template and XTuner's ``qwen_chat`` template write it.
# Every front end (training, lmdeploy, transformers, OpenCompass) is tested to render a conversation
# exactly as :func:`render_chatml` does (tests/*/test_*chat*).

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
#: The text a prompt ends with: the model writes the reply after it.
GENERATION_PROMPT = f"{IM_START}assistant\n"
#: XTuner's name for this format (``PROMPT_TEMPLATE.qwen_chat``), used by the configs and `xtuner chat`.
XTUNER_PROMPT_TEMPLATE = "qwen_chat"
#: What ends a reply. Training labels the reply plus IM_END; ENDOFTEXT is Qwen's end of document.
STOP_WORDS: tuple[str, ...] = (IM_END, ENDOFTEXT)

#: ASCII names of the styles, for file names and command lines (STYLE=gentle works like STYLE=温柔).
STYLE_SLUGS: dict[str, str] = {style.label: style.slug for style in _STYLE_SET}


def resolve_style(name: str) -> str:
    """A style label from its label or its ASCII name (``gentle`` -> ``温柔``)."""
    name = name.strip()
    if name in STYLES:
        return name
    for style, slug in STYLE_SLUGS.items():
        if name.lower() == slug:
            return style
    known = ", ".join(f"{style} ({slug})" for style, slug in STYLE_SLUGS.items())
    raise ValueError(f"unknown style {name!r}; use one of {known}")


def chatml_block(role: str, content: str) -> str:
    """One message: ``<|im_start|>role\\ncontent<|im_end|>\\n``."""
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def render_chatml(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The reference rendering of a conversation that starts with its system message.

    ``messages``: ``[{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}, ...]``
    (user and assistant alternating). With ``add_generation_prompt`` the text ends with
    :data:`GENERATION_PROMPT`, the prompt the model answers. This is what XTuner's ``qwen_chat``
    template trains on for a row whose first turn carries ``system`` (prompt parts unlabelled, each
    reply plus ``<|im_end|>`` labelled, a ``\\n`` after it) and what Qwen2.5's own template renders for
    the same messages. A conversation without a system message is refused: there the two differ
    (XTuner writes no system block, Qwen inserts its default one), which is why every row has one.
    """
    if not messages or messages[0].get("role") != "system":
        raise ValueError("a conversation must start with its system message (see style_tune.core.prompts)")
    for i, message in enumerate(messages[1:]):
        expected = "user" if i % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise ValueError(f"message {i + 1} has role {message.get('role')!r}; expected {expected!r}")
    text = "".join(chatml_block(message["role"], message["content"]) for message in messages)
    return text + GENERATION_PROMPT if add_generation_prompt else text


# ---------------------------------------------------------------------------------------------
# Generated front-end settings: lmdeploy's chat template JSON and OpenCompass's meta template.

#: The lmdeploy chat template files (style_tune/data/chat_templates.py writes them), relative to the
#: repository root: one for label mode, one per style for controllable mode.
CHAT_TEMPLATE_DIR = "style_data"

#: Keys that every lmdeploy version's ``--chat-template`` JSON accepts.
LMDEPLOY_TEMPLATE_KEYS: tuple[str, ...] = (
    "model_name", "system", "meta_instruction", "eosys", "user", "eoh", "assistant", "eoa",
    "separator", "capability", "stop_words",
)


def chat_template_file(mode: str, style: str | None = None) -> str:
    """The lmdeploy template for a mode (and, in controllable mode, a style), relative to the repo."""
    if mode == "label":
        return f"{CHAT_TEMPLATE_DIR}/chat_template.json"
    system_text(mode, style)  # validates mode and style
    assert style is not None  # system_text refuses any other mode without a style
    return f"{CHAT_TEMPLATE_DIR}/chat_template_{mode}_{STYLE_SLUGS[style]}.json"


def lmdeploy_chat_template(mode: str, style: str | None = None) -> dict[str, object]:
    """lmdeploy's ``--chat-template`` JSON: ChatML with the mode's (and style's) system text.

    ``meta_instruction`` is the system text lmdeploy writes when a conversation has no system
    message (``lmdeploy chat`` never sends one); a request that sends one (``serve api_server``)
    gets its own text instead, which is how a client picks the style in controllable mode.
    ``model_name`` is not one of lmdeploy's built-in template names, so lmdeploy uses these fields.
    """
    system = system_text(mode, style)  # validates mode and style
    if mode == "label":
        name = "style-tune-label"
    else:
        assert style is not None  # system_text refuses any other mode without a style
        name = f"style-tune-{mode}-{STYLE_SLUGS[style]}"
    return {
        "model_name": name,
        "system": f"{IM_START}system\n",
        "meta_instruction": system,
        "eosys": f"{IM_END}\n",
        "user": f"{IM_START}user\n",
        "eoh": f"{IM_END}\n",
        "assistant": GENERATION_PROMPT,
        "eoa": IM_END,
        "separator": "\n",
        "capability": "chat",
        "stop_words": list(STOP_WORDS),
    }


#: ``meta_template`` of every OpenCompass ``HuggingFacewithChatTemplate`` model config that is asked a
#: dataset prompt with a SYSTEM item first (eval_configs/eval_style.py: each row's own system text, then
#: its user input). It keeps that item a real system message, first, so OpenCompass asks the model
#: exactly what it was trained on (render_chatml). OpenCompass's default meta template does not: it
#: makes the SYSTEM item a user message (Qwen's tokenizer template then inserts its default system
#: text) and its empty SYSTEM slot in every round appends "\n" to each user message.
OPENCOMPASS_META_TEMPLATE: dict[str, object] = dict(
    round=[dict(role="HUMAN", api_role="HUMAN"), dict(role="BOT", api_role="BOT", generate=True)],
    reserved_roles=[dict(role="SYSTEM", api_role="SYSTEM")],
)
