"""The conversations every toolchain's chat-format test renders, defined once (standard library only).

Each toolchain lives in its own environment, so each environment's test compares its toolchain's
rendering (text and, where it has a tokenizer, token ids) with the reference renderer
:func:`style_tune.prompts.render_chatml` on these cases; equal to one reference, they are equal to
each other:

    tests/core/test_chat_format_reference.py   the reference itself, the split tool's rows, the templates
    tests/train/test_chat_format.py            XTuner's dataset code, the tokenizer template, `xtuner chat`
    tests/deploy/test_chat_template.py         lmdeploy's rendering of style_data/chat_template*.json
    tests/eval/test_opencompass_chat_format.py OpenCompass's HuggingFacewithChatTemplate

A case is one conversation in one mode: its system text and assistant outputs come from
style_tune.prompts exactly as the split tool writes training rows. Turn ``k`` (1-based) is asked
with the prompt ``prompt(k)``; the model must answer ``output(k)`` and end it with ``<|im_end|>``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from style_tune.prompts import output_text, render_chatml, system_text

REPO_ROOT = Path(__file__).resolve().parents[1]


Message = dict[str, str]


@dataclass(frozen=True)
class Case:
    id: str
    mode: str
    style: str
    turns: tuple[tuple[str, str], ...]  # (user, reply as in the CSV) per turn

    @property
    def system(self) -> str:
        return system_text(self.mode, self.style)

    def output(self, k: int) -> str:
        """What the model learns to write in turn k (the style label line first in seed mode)."""
        return output_text(self.mode, self.style, self.turns[k - 1][1])

    def messages(self) -> list[Message]:
        """The whole conversation, system message first (OpenAI / transformers message format)."""
        messages = [{"role": "system", "content": self.system}]
        for k, (user, _) in enumerate(self.turns, start=1):
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": self.output(k)})
        return messages

    def prompt_messages(self, k: int, *, with_system: bool = True) -> list[Message]:
        """The messages a front end sends to ask turn k: the history and the k-th user message."""
        messages = self.messages()[: 2 * k]
        return messages if with_system else messages[1:]

    def prompt(self, k: int) -> str:
        """The reference prompt of turn k."""
        return render_chatml(self.prompt_messages(k), add_generation_prompt=True)

    def xtuner_row(self) -> dict[str, list[dict[str, str]]]:
        """The XTuner training row: the system text on the first turn, as tools/split_data.py writes it."""
        conversation = []
        for k, (user, _) in enumerate(self.turns, start=1):
            turn = {"system": self.system} if k == 1 else {}
            conversation.append({**turn, "input": user, "output": self.output(k)})
        return {"conversation": conversation}


CASES: tuple[Case, ...] = (
    Case("seed-1turn", "seed", "温柔", (
        ("今天加班到十点，好累啊", "辛苦啦！先好好吃顿热乎的饭，早点休息，明天会更好的🌸"),
    )),
    Case("seed-2turn", "seed", "毒舌", (
        ("我想减肥，但是管不住嘴", "嘴：我可没答应过你。"),
        ("那你说我该怎么办？\n在线等，挺急的", "先把外卖 App 卸了，再把零食柜上把锁，钥匙交给你妈 😏"),
    )),
    Case("controllable-1turn", "controllable", "毒舌", (
        ("iPhone 16 又涨价了，要不要买", "买，钱包都替你哭出声了：它终于不用再装作有钱了。"),
    )),
    Case("controllable-2turn", "controllable", "温柔", (
        ("明天要考试了，一点都没复习", "别慌，还有一晚上呢～先挑最重要的三章看，累了就休息一下，你可以的💪"),
        ("可是我真的好紧张", "紧张说明你在乎呀。深呼吸，今晚早点睡，带着好状态进考场就赢了一半啦。"),
    )),
)

CASE_IDS = [case.id for case in CASES]


def tiny_model_path(tmp_dir: Path, arch: str = "qwen2.5") -> Path:
    """A tiny stand-in model for the environments that cannot build it (eval, deploy).

    ``models/tiny-qwen2.5`` (`make tiny-model`), or for ``arch="internlm2"`` the eval-select rival's
    stand-in ``models/tiny-internlm2`` (`make tiny-internlm`), when it is complete; otherwise built
    into ``tmp_dir`` with the train environment's Python (tools/build_tiny_model.py needs its packages).
    Only its tokenizer, generation config and (for OpenCompass) weights are used.
    """
    names = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
             "tokenizer_config.json")
    name = {"qwen2.5": "tiny-qwen2.5", "internlm2": "tiny-internlm2"}[arch]
    existing = REPO_ROOT / "models" / name
    if all((existing / file).is_file() for file in names):
        return existing
    python = REPO_ROOT / ".envs" / "train" / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no models/{name}, and no train environment to build it: make setup")
    out = tmp_dir / name
    proc = subprocess.run(
        [str(python), str(REPO_ROOT / "tools" / "build_tiny_model.py"), str(out), "--arch", arch],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"build_tiny_model failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out
