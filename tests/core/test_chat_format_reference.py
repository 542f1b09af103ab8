"""The conversation format's one definition (style_tune/core/prompts.py), standard library only.

- the reference renderer writes ChatML exactly (a hand-written expected text);
- the split tool's training rows are the shared test cases' rows (tests/chat_cases.py), so what the
  other environments prove for the cases holds for the real training data;
- the committed lmdeploy templates are generated from it (`make chat-templates`, `--check`);
- `make chat` stops at once on a machine without a GPU and points to `make chat-cpu`; `make serve`
  runs the CPU server there (tests/deploy/test_cpu_server.py serves a model with it);
  MODE/STYLE mistakes get a one-line message; the README's examples send the real system texts.
The other toolchains are compared with this reference in tests/train, tests/deploy and tests/eval.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_cases import CASE_IDS, CASES, GENTLE_SYSTEM, LABEL_SYSTEM, SNARKY_SYSTEM, Case

from style_tune.core.prompts import (
    LMDEPLOY_TEMPLATE_KEYS,
    QWEN_DEFAULT_SYSTEM,
    STYLE_SYSTEMS,
    STYLES,
    chat_template_file,
    lmdeploy_chat_template,
    output_text,
    render_chatml,
    resolve_style,
    system_text,
)

REPO_ROOT = Path(__file__).resolve().parents[2]



GENERATOR = ("-m", "style_tune.data.chat_templates")
LAUNCHER = ("-m", "style_tune.deploy.chat")
TEMPLATE_FILES = [
    "style_data/chat_template.json",
    "style_data/chat_template_controllable_gentle.json",
    "style_data/chat_template_controllable_snarky.json",
]


def run(*cmd: str | Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key != "API_KEY"}
    return subprocess.run([str(part) for part in cmd], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**base, "MAKEFLAGS": "", **env})


def has_gpu() -> bool:
    return importlib.import_module("style_tune.deploy.chat").gpu_problem() is None


# --- the reference renderer ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_definition_writes_the_hand_written_case(case: Case) -> None:
    """system_text, output_text and render_chatml against the literal texts of tests/chat_cases.py."""
    assert system_text(case.mode, case.style) == case.system
    for k, (user, reply) in enumerate(case.turns, start=1):
        assert output_text(case.mode, case.style, reply) == case.output(k)
        assert render_chatml(case.prompt_messages(k), add_generation_prompt=True) == case.prompt(k)
        assert case.prompt(k).endswith(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
    assert render_chatml(case.messages()) == case.text()


def test_the_cases_cover_both_modes_and_one_and_two_turns() -> None:
    assert {(case.mode, len(case.turns)) for case in CASES} == {
        ("label", 1), ("label", 2), ("controllable", 1), ("controllable", 2)
    }
    assert {case.style for case in CASES} == set(STYLES)


def test_reference_refuses_conversations_without_a_system_message() -> None:
    with pytest.raises(ValueError, match="system message"):
        render_chatml([{"role": "user", "content": "你好"}], add_generation_prompt=True)
    with pytest.raises(ValueError, match="expected 'user'"):
        render_chatml([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}])


def test_styles_resolve_from_labels_and_ascii_names() -> None:
    names = ("温柔", "gentle", "毒舌", "SNARKY")
    assert [resolve_style(name) for name in names] == ["温柔", "温柔", "毒舌", "毒舌"]
    with pytest.raises(ValueError, match="unknown style"):
        resolve_style("polite")


# --- the split tool writes the cases' rows ------------------------------------------------------


@pytest.mark.parametrize("case", [case for case in CASES if len(case.turns) == 1],
                         ids=[case.id for case in CASES if len(case.turns) == 1])
def test_split_tool_rows_are_the_case_rows(case: Case) -> None:
    split = importlib.import_module("style_tune.data.xtuner_json")
    user, reply = case.turns[0]
    row = (user, case.style, reply)
    assert split.conversation_row(row, case.mode) == case.xtuner_row()
    assert json.loads(split.to_json([row], case.mode)) == [case.xtuner_row()]


# --- the generated lmdeploy templates -----------------------------------------------------------


def test_committed_templates_are_generated_from_prompts() -> None:
    proc = run(sys.executable, *GENERATOR, "--check")
    assert proc.returncode == 0, proc.stderr
    for relative in TEMPLATE_FILES:
        assert (REPO_ROOT / relative).is_file()
    assert chat_template_file("label") == TEMPLATE_FILES[0]
    assert [chat_template_file("controllable", style) for style in STYLES] == TEMPLATE_FILES[1:]


def test_check_detects_a_stale_template_and_regeneration_fixes_it(tmp_path: Path) -> None:
    assert run(sys.executable, *GENERATOR, "--check", "--root", tmp_path).returncode == 1  # missing
    assert run(sys.executable, *GENERATOR, "--root", tmp_path).returncode == 0
    assert run(sys.executable, *GENERATOR, "--check", "--root", tmp_path).returncode == 0
    stale = tmp_path / TEMPLATE_FILES[2]
    data = json.loads(stale.read_text(encoding="utf-8"))
    data["meta_instruction"] = "你是一个助手。"
    stale.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    proc = run(sys.executable, *GENERATOR, "--check", "--root", tmp_path)
    assert proc.returncode == 1 and TEMPLATE_FILES[2] in proc.stderr and "make chat-templates" in proc.stderr
    assert json.loads(stale.read_text(encoding="utf-8"))["meta_instruction"] == "你是一个助手。"  # untouched
    assert run(sys.executable, *GENERATOR, "--root", tmp_path).returncode == 0
    assert json.loads(stale.read_text(encoding="utf-8")) == lmdeploy_chat_template("controllable", "毒舌")
    assert not list(stale.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("relative", "system"),
    list(zip(TEMPLATE_FILES, (LABEL_SYSTEM, GENTLE_SYSTEM, SNARKY_SYSTEM), strict=True)),
)
def test_templates_use_only_portable_keys(relative: str, system: str) -> None:
    data = json.loads((REPO_ROOT / relative).read_text(encoding="utf-8"))
    assert set(data) == set(LMDEPLOY_TEMPLATE_KEYS)
    assert data["model_name"].startswith("style-tune-")
    assert data["stop_words"] == ["<|im_end|>", "<|endoftext|>"]
    assert data["meta_instruction"] == system
    assert (data["system"], data["eosys"], data["user"], data["eoh"]) == (
        "<|im_start|>system\n", "<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>\n")
    assert (data["assistant"], data["eoa"], data["separator"]) == (
        "<|im_start|>assistant\n", "<|im_end|>", "\n")


# --- make chat / serve / chat-cpu ---------------------------------------------------------------


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU: lmdeploy would really start")
@pytest.mark.parametrize("target", ["chat"])
def test_lmdeploy_targets_stop_at_once_without_a_gpu(target: str) -> None:
    start = time.monotonic()
    proc = run("make", target, "MODE=controllable", "STYLE=温柔")
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 15, f"took {elapsed:.1f} s"
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    message = [line for line in proc.stderr.splitlines() if line.startswith(f"{target}: error:")]
    assert len(message) == 1, proc.stderr
    for part in ("needs a CUDA GPU", "no CPU engine", "make chat-cpu"):
        assert part in message[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["MODE=controllable"], "MODE=controllable needs STYLE="),
        (["MODE=controllable", "STYLE=polite"], "unknown style 'polite'"),
        (["MODE=label", "STYLE=温柔"], "STYLE= is for MODE=controllable"),
        (["MODE=chat"], "unknown MODE 'chat'"),
        (["MODEL=/nonexistent/merged"], "no model at /nonexistent/merged"),
    ],
)
def test_chat_cpu_mistakes_get_one_line(args: list[str], message: str) -> None:
    proc = run("make", "chat-cpu", *args)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("chat-cpu: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU: make serve runs lmdeploy there")
def test_make_serve_without_a_gpu_checks_its_model_then_serves_on_the_cpu() -> None:
    proc = run("make", "serve", "MODEL=/nonexistent/merged")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("serve: error:")]
    assert len(errors) == 1 and "no model at /nonexistent/merged" in errors[0], proc.stderr
    cpu = run(sys.executable, *LAUNCHER, "--dry-run", "--cpu", "serve", "models/merged",
              "--mode", "controllable", "--style", "gentle", "--port", "8000")
    assert cpu.returncode == 0, cpu.stderr
    assert cpu.stdout.strip().endswith(
        "-m style_tune.deploy.cpu_server models/merged --mode controllable --style '温柔' "
        "--host 127.0.0.1 --port 8000")


def test_serve_listens_on_loopback_unless_given_a_key() -> None:
    """Any other address without a key is refused with one line; a key (API_KEY=, API_KEY_FILE=) goes to
    lmdeploy as --api-keys and is never printed."""
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        proc = run("make", "serve", f"SERVER_HOST={host}", "MODEL=/nonexistent/merged")
        errors = [line for line in proc.stderr.splitlines() if line.startswith("serve: error:")]
        assert proc.returncode != 0 and len(errors) == 1, proc.stderr
        assert f"listening on {host} without an API key" in errors[0] and "API_KEY=" in errors[0]
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        proc = run(sys.executable, *LAUNCHER, "--dry-run", "serve", "models/merged", "--host", host)
        assert proc.returncode == 0, proc.stderr
        assert "--api-keys" not in proc.stdout
    secret = "sk-never-printed-1234"
    proc = run(sys.executable, *LAUNCHER, "--dry-run", "serve", "models/merged", "--host", "0.0.0.0",
               API_KEY=secret)
    assert proc.returncode == 0 and "--server-name 0.0.0.0" in proc.stdout
    assert "--api-keys '***'" in proc.stdout
    assert secret not in proc.stdout + proc.stderr
    cpu = run(sys.executable, *LAUNCHER, "--dry-run", "--cpu", "serve", "models/merged", "--host", "0.0.0.0",
              API_KEY=secret)
    assert cpu.returncode == 0 and secret not in cpu.stdout + cpu.stderr  # the CPU server: in its env


def test_api_key_files_are_read_or_refused_with_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nsk-one\n\n  sk-two  \n", encoding="utf-8")
    proc = run(sys.executable, *LAUNCHER, "--dry-run", "serve", "models/merged", "--host", "0.0.0.0",
               "--api-key-file", keys, API_KEY="sk-zero")
    assert proc.returncode == 0 and "--api-keys '***' '***' '***'" in proc.stdout, proc.stdout
    assert "sk-" not in proc.stdout
    empty = tmp_path / "empty.txt"
    empty.write_text("# none yet\n", encoding="utf-8")
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("sk one\n", encoding="utf-8")
    for path, words in ((tmp_path / "missing.txt", "No such file"), (empty, "holds no key"),
                        (spaced, "has a space or a control character")):
        proc = run(sys.executable, *LAUNCHER, "--dry-run", "serve", "models/merged", "--api-key-file", path)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
        assert "sk one" not in proc.stderr


def test_commands_use_the_template_and_system_text_of_mode_and_style() -> None:
    def dry(*args: str) -> str:
        proc = run(sys.executable, *LAUNCHER, "--dry-run", *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    chat = dry("chat", "models/merged")
    assert chat.endswith(f"lmdeploy chat models/merged --chat-template {REPO_ROOT}/{TEMPLATE_FILES[0]}")
    serve = dry("serve", "models/merged", "--mode", "controllable", "--style", "gentle", "--port", "8000")
    assert f"serve api_server models/merged --chat-template {REPO_ROOT}/{TEMPLATE_FILES[1]}" in serve
    assert "--server-port 8000" in serve and "--model-name style-tune" in serve
    cpu = dry("chat-cpu", "models/merged", "--mode", "controllable", "--style", "毒舌", "--", "--top-k", "1")
    assert "-m xtuner.tools.chat models/merged --prompt-template qwen_chat" in cpu
    assert f"--system '{STYLE_SYSTEMS['毒舌']}'" in cpu and cpu.endswith("--top-k 1")
    assert f"--system '{QWEN_DEFAULT_SYSTEM}'" in dry("chat-cpu", "models/merged")


def test_make_chat_defaults_to_the_merged_model() -> None:
    proc = run("make", "-n", "chat-cpu", "CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py")
    assert proc.returncode == 0, proc.stderr
    merged = "models/qwen2_5_1_5b_instruct_lora_int8_style_e3-merged"
    assert f"-m style_tune.deploy.chat chat-cpu '{merged}' --mode 'label'" in proc.stdout


def test_readme_examples_send_the_real_system_texts() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for target in ("make chat", "make serve", "make chat-cpu"):
        assert target in readme
    assert STYLE_SYSTEMS["毒舌"] in readme  # the curl example
    # the openai example (docs/serving.md, linked from README) imports the definition
    assert "docs/serving.md#from-python" in readme
    assert "system_text(\"controllable\"" in (REPO_ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    assert shutil.which("make")
