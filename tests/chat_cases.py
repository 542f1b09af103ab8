"""The conversations every toolchain's chat-format test renders, written out by hand (standard library only).

Each case holds, as literal text, its system message, what the model learns to write in each turn
and the whole prompt of each turn. Nothing here is computed by style_tune.core.prompts: the definition
and every toolchain are compared with these texts, so a change to any of them fails a test:

    tests/core/test_chat_format_reference.py   the definition (system_text, output_text, render_chatml),
                                               the split tool's rows, the templates
    tests/train/test_chat_format.py            XTuner's dataset code, the tokenizer template, `xtuner chat`
    tests/deploy/test_chat_template.py         lmdeploy's rendering of style_data/chat_template*.json
    tests/eval/test_opencompass_chat_format.py OpenCompass's HuggingFacewithChatTemplate
    tests/deploy/test_cpu_server.py            the CPU server (`make serve` without a GPU): the ids
                                               style_tune/deploy/cpu_server.py hands generate

Turn ``k`` (1-based) is asked with the prompt ``prompt(k)``; the model must answer ``output(k)`` and
end it with ``<|im_end|>``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


Message = dict[str, str]

# Hand-written: none of this is computed by style_tune.core.prompts, so a change to the definition (a
# system text, the label line, the controllable reply, the ChatML layout) fails the tests that
# compare the definition and every toolchain with these texts.
LABEL_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
GENTLE_SYSTEM = "你是一个温柔的聊天伙伴。请用温柔的风格回复用户：语气温暖体贴，多安慰和鼓励，话题保持不变。"
SNARKY_SYSTEM = (
    "你是一个毒舌的聊天伙伴。请用毒舌的风格回复用户：机智调侃、幽默吐槽，不人身攻击，话题保持不变。"
)


@dataclass(frozen=True)
class Case:
    id: str
    mode: str
    style: str
    system: str  # the system text of the mode (and style)
    turns: tuple[tuple[str, str], ...]  # (user, reply as in the CSV) per turn
    outputs: tuple[str, ...]  # what the model learns to write per turn (the label line in label mode)
    prompts: tuple[str, ...]  # the whole prompt that asks each turn, ending with the generation prompt

    def output(self, k: int) -> str:
        """What the model learns to write in turn k (1-based)."""
        return self.outputs[k - 1]

    def prompt(self, k: int) -> str:
        """The prompt of turn k, as every front end must build it."""
        return self.prompts[k - 1]

    def text(self) -> str:
        """The whole training conversation: the last prompt, the last output, its end."""
        return f"{self.prompts[-1]}{self.outputs[-1]}<|im_end|>\n"

    def messages(self) -> list[Message]:
        """The whole conversation, system message first (OpenAI / transformers message format)."""
        messages = [{"role": "system", "content": self.system}]
        for (user, _), output in zip(self.turns, self.outputs, strict=True):
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": output})
        return messages

    def prompt_messages(self, k: int, *, with_system: bool = True) -> list[Message]:
        """The messages a front end sends to ask turn k: the history and the k-th user message."""
        messages = self.messages()[: 2 * k]
        return messages if with_system else messages[1:]

    def xtuner_row(self) -> dict[str, list[dict[str, str]]]:
        """The XTuner training row: the system text on the first turn, as style_tune.data.split writes it."""
        conversation = []
        for k, ((user, _), output) in enumerate(zip(self.turns, self.outputs, strict=True), start=1):
            turn = {"system": self.system} if k == 1 else {}
            conversation.append({**turn, "input": user, "output": output})
        return {"conversation": conversation}


CASES: tuple[Case, ...] = (
    Case(
        "label-1turn", "label", "温柔", LABEL_SYSTEM,
        turns=(("今天加班到十点，好累啊", "辛苦啦！先好好吃顿热乎的饭，早点休息，明天会更好的🌸"),),
        outputs=("温柔\n辛苦啦！先好好吃顿热乎的饭，早点休息，明天会更好的🌸",),
        prompts=(
            f"<|im_start|>system\n{LABEL_SYSTEM}<|im_end|>\n"
            "<|im_start|>user\n今天加班到十点，好累啊<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
    ),
    Case(
        "label-2turn", "label", "毒舌", LABEL_SYSTEM,
        turns=(
            ("我想减肥，但是管不住嘴", "嘴：我可没答应过你。"),
            ("那你说我该怎么办？\n在线等，挺急的", "先把外卖 App 卸了，再把零食柜上把锁，钥匙交给你妈 😏"),
        ),
        outputs=(
            "毒舌\n嘴：我可没答应过你。",
            "毒舌\n先把外卖 App 卸了，再把零食柜上把锁，钥匙交给你妈 😏",
        ),
        prompts=(
            f"<|im_start|>system\n{LABEL_SYSTEM}<|im_end|>\n"
            "<|im_start|>user\n我想减肥，但是管不住嘴<|im_end|>\n"
            "<|im_start|>assistant\n",
            f"<|im_start|>system\n{LABEL_SYSTEM}<|im_end|>\n"
            "<|im_start|>user\n我想减肥，但是管不住嘴<|im_end|>\n"
            "<|im_start|>assistant\n毒舌\n嘴：我可没答应过你。<|im_end|>\n"
            "<|im_start|>user\n那你说我该怎么办？\n在线等，挺急的<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
    ),
    Case(
        "controllable-1turn", "controllable", "毒舌", SNARKY_SYSTEM,
        turns=(("iPhone 16 又涨价了，要不要买", "买，钱包都替你哭出声了：它终于不用再装作有钱了。"),),
        outputs=("买，钱包都替你哭出声了：它终于不用再装作有钱了。",),
        prompts=(
            f"<|im_start|>system\n{SNARKY_SYSTEM}<|im_end|>\n"
            "<|im_start|>user\niPhone 16 又涨价了，要不要买<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
    ),
    Case(
        "controllable-2turn", "controllable", "温柔", GENTLE_SYSTEM,
        turns=(
            ("明天要考试了，一点都没复习",
             "别慌，还有一晚上呢～先挑最重要的三章看，累了就休息一下，你可以的💪"),
            ("可是我真的好紧张", "紧张说明你在乎呀。深呼吸，今晚早点睡，带着好状态进考场就赢了一半啦。"),
        ),
        outputs=(
            "别慌，还有一晚上呢～先挑最重要的三章看，累了就休息一下，你可以的💪",
            "紧张说明你在乎呀。深呼吸，今晚早点睡，带着好状态进考场就赢了一半啦。",
        ),
        prompts=(
            f"<|im_start|>system\n{GENTLE_SYSTEM}<|im_end|>\n"
            "<|im_start|>user\n明天要考试了，一点都没复习<|im_end|>\n"
            "<|im_start|>assistant\n",
            f"<|im_start|>system\n{GENTLE_SYSTEM}<|im_end|>\n"
            "<|im_start|>user\n明天要考试了，一点都没复习<|im_end|>\n"
            "<|im_start|>assistant\n"
            "别慌，还有一晚上呢～先挑最重要的三章看，累了就休息一下，你可以的💪<|im_end|>\n"
            "<|im_start|>user\n可是我真的好紧张<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
    ),
)

CASE_IDS = [case.id for case in CASES]


def tiny_model_path(tmp_dir: Path, arch: str = "qwen2.5", seed: int = 0) -> Path:
    """A tiny stand-in model (``arch`` qwen2.5, or internlm2 for eval-select's rival; random weights drawn
    from ``seed``), built into ``tmp_dir`` by the current style_tune/train/tiny_model.py.

    Built with the train environment's Python (the builder needs its packages), so the eval and
    deploy environments test what the current code builds, never a leftover in ``models/`` from an
    older build. Only its tokenizer, generation config and (for OpenCompass) weights are used.
    """
    python = REPO_ROOT / ".envs" / "train" / "bin" / "python"
    if not python.exists():
        raise RuntimeError("no train environment to build the tiny model with: make env-train")
    name = {"qwen2.5": "tiny-qwen2.5", "internlm2": "tiny-internlm2"}[arch]
    out = tmp_dir / name
    proc = subprocess.run(
        [str(python), "-m", "style_tune.train.tiny_model", str(out), "--arch", arch,
         "--size", "tiny", "--seed", str(seed)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"build_tiny_model failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out
