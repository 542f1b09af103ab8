"""README.md is a command list (LLaMA-Factory's examples/README.md manner) whose every command is tested.

- README.md has at most 200 lines; the why lives in docs/.
- Every relative link in README.md, docs/*.md, the data card and benchmarks/README.md names a file
  of the repository (and, with an ``#anchor``, a heading of that file).
- Every command in README's shell blocks is exercised: COMMAND_TESTS maps each one, exactly as
  written there, to the test that runs it (or to ``make test`` itself). A README command without an
  entry fails, and so does an entry whose test function is gone or whose test file never mentions the
  command's make target, the module or script that target runs, or the command's program.

Standard library only: tests/core runs in the dev env.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
#: The pages README links for what stays beside its code: the data card and the benchmark results.
COMPANIONS = [REPO_ROOT / "style_data" / "README.md", REPO_ROOT / "benchmarks" / "README.md"]
MAX_LINES = 200
#: The command is `make test` itself, or a target its recipe runs (`$(MAKE) setup`, `$(MAKE) check-envs`).
MAKE_TEST = "make test"

#: Every command of README's shell blocks, as written there -> the test that exercises it. Commands
#: that need a GPU or the network (download, lmdeploy, training the real model) map to the CPU test
#: that runs the same target or tool with a tiny model, or to the test of their arguments.
COMMAND_TESTS = {
    # two commands, demo: `make demo` runs end to end (small settings, tiny model) for the eval suite's
    # models; MODE=controllable: its settings (the config of the mode), its steps as make demo's
    "make demo":
        "tests/eval/test_eval_make_targets.py::test_demo_runs_end_to_end_and_reports_its_loss_and_artefacts",
    "make test": MAKE_TEST,
    "make demo MODE=controllable":
        "tests/train/test_demo_base.py::test_demo_runs_the_xtuner_config_of_its_mode",
    "make demo MODE=controllable STAGE=dpo":
        "tests/train/test_preference.py::"
        "test_make_demo_with_a_stage_runs_dpo_from_the_merged_sft_model",
    # the runner's tables from its per-seed results, and README's figures from the committed run
    "make demo-seeds": "tests/core/test_demo_seeds.py::test_readme_figures_are_the_committed_runs",
    # the whole chain on three tiny models (its README block from the kept data: test_leaderboard.py too)
    "make leaderboard":
        "tests/eval/test_leaderboard.py::test_the_chain_judges_every_pair_and_keeps_what_the_readme_is_made_of",
    # preference tuning: the pairs on the shipped data; DPO on the CPU twin of the GPU config
    "make split prefs MODE=controllable":
        "tests/core/test_prefs.py::test_make_prefs_runs_on_the_shipped_data",
    "make train CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py "
    "MODEL=models/qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3-merged "
    "DATA=data/controllable/prefs.jsonl":
        "tests/train/test_preference.py::test_seeded_dpo_run_has_the_pinned_loss",
    # eval-demo is eval-style on the demo's models, on the CPU
    "make eval-demo": "tests/eval/test_eval_make_targets.py::test_summary_has_every_metric_for_both_models",
    # the recipe on a GPU
    "make setup": MAKE_TEST,
    # network: the modelscope command line the target runs, parsed by modelscope's own parser
    "make download": "tests/train/test_download_cli.py::test_the_script_uses_the_current_form",
    "make split": "tests/core/test_split_data.py::test_real_data",
    "make train": "tests/train/test_recipe.py::test_seeded_run_has_the_pinned_loss",
    "make convert ITER=best":
        "tests/train/test_recipe.py::test_convert_iter_best_converts_the_best_checkpoint",
    "make merge": "tests/train/test_recipe.py::test_merged_logits_equal_base_plus_adapter",
    # GPU: lmdeploy's own rendering of that template is the training prompt
    ".envs/deploy/bin/lmdeploy chat models/qwen2_5_1_5b_instruct_lora_bf16_style_e3-merged "
    "--chat-template style_data/chat_template.json":
        "tests/deploy/test_chat_template.py::test_lmdeploy_chat_renders_the_reference",
    # make train with another CONFIG= (the CPU config, on the tiny model)
    "make train CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py":
        "tests/train/test_recipe.py::test_train_writes_checkpoints_and_loss",
    "make train NPROC_PER_NODE=2":
        "tests/train/test_multiprocess.py::test_two_processes_train_together_on_cpu",
    # the default config built as `xtuner train` builds it (the xtuner entry point itself only
    # dispatches to xtuner.tools.train, which make train runs)
    ". .envs/train/bin/activate && xtuner train xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_style_e3.py":
        "tests/train/test_contamination.py::test_default_config_trains_every_conversation_as_if_alone",
    # chat and serve (GPU: the lmdeploy command line the target runs, checked without a GPU)
    "make chat":
        "tests/core/test_chat_format_reference.py::test_commands_use_the_template_and_system_text_of_mode_and_style",
    "make serve": "tests/deploy/test_cpu_server.py::test_make_serve_with_a_key_stops_cleanly",
    "make chat-cpu MODEL=models/tiny-qwen2.5-demo-label-merged":
        "tests/train/test_chat_format.py::test_chat_cpu_runs_on_the_tiny_model_with_the_reference_prompts",
    "make chat-cpu MODE=controllable STYLE=毒舌 MODEL=models/tiny-qwen2.5-demo-controllable-merged":
        "tests/train/test_chat_format.py::test_chat_cpu_runs_on_the_tiny_model_with_the_reference_prompts",
    "make serve MODE=controllable STYLE=温柔 MODEL=models/tiny-qwen2.5-demo-controllable-merged":
        "tests/deploy/test_cpu_server.py::test_the_system_text_selects_the_style",
    "make webui": "tests/webui/test_webui.py::test_a_blind_session_reveals_after_each_verdict_and_resumes",
    "make verdicts": "tests/eval/test_verdicts.py::test_make_verdicts_counts_a_file",
    # N models: three behind a login through the real page (demo's bare names resolve in the Makefile)
    'make webui MODE=controllable COMPARE="base sft dpo orpo"':
        "tests/webui/test_webui.py::test_three_models_behind_a_login_each_pair_equally_often",
    # evaluation (the real models: the same targets on the tiny stand-ins)
    "make eval-select":
        "tests/eval/test_eval_make_targets.py::test_eval_select_runs_both_candidates_into_the_articles_table",
    "make eval-style": "tests/eval/test_eval_make_targets.py::test_summary_has_every_metric_for_both_models",
    "make report": "tests/eval/test_eval_make_targets.py::test_report_is_written",
    'make eval-retention TUNED="sft=models/x-merged:controllable"':
        "tests/eval/test_retention.py::test_table_accuracies_equal_the_per_item_results_opencompass_wrote",
    "make eval-style JUDGE_API=https://api.openai.com/v1 JUDGE_MODEL=gpt-4o-mini":
        "tests/eval/test_eval_make_targets.py::test_judge_adds_its_section_and_columns_to_the_report",
    "make score-replies REPLIES=replies.jsonl":
        "tests/eval/test_style_robust.py::test_score_replies_tool_uses_the_evaluator_scores",
    # data generation (against the real CPU server, behind a fault-injecting proxy)
    "make gen-data PROMPTS=my_prompts.txt OUT=data/generated.csv API_BASE=http://127.0.0.1:23333/v1 "
    "GEN_MODEL=qwen2.5-7b": "tests/eval/test_gen_data_server.py::test_faults_are_retried_and_counts_add_up",
    "make split CSV=data/generated.csv MODE=controllable":
        "tests/eval/test_third_style.py::test_a_third_style_goes_through_every_step_without_code_change",
    # benchmark (the script make bench runs, on the tiny model)
    "make bench": "tests/train/test_bench.py::test_bench_reports_every_variant",
    # tests
    "make check-envs": MAKE_TEST,
    "make mutation-gate": MAKE_TEST,
    "make lint": "tests/core/test_dev_env_step.py::test_the_dev_envs_step_of_check_envs_runs",
}

FENCE = re.compile(r"^```(\S*)\s*$")
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=\S*$")  # NAME=value on a line of its own: not a command
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """The fenced code blocks of a Markdown text: (info string, lines)."""
    found, info, lines = [], None, []
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence and info is None:
            info, lines = fence[1], []
        elif line.startswith("```") and info is not None:
            found.append((info, lines))
            info = None
        elif info is not None:
            lines.append(line)
    assert info is None, "an unclosed code block"
    return found


def shell_commands(text: str) -> list[str]:
    """The commands of the shell blocks: continuation lines joined, comments and assignments left out."""
    commands: list[str] = []
    for info, lines in blocks(text):
        if info not in SHELL_BLOCKS:
            continue
        joined = "\n".join(lines).replace("\\\n", " ")
        for line in joined.splitlines():
            line = re.sub(r"(^|\s+)#(\s.*)?$", "", line).strip()
            if line and not ASSIGNMENT.match(line):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def prose(text: str) -> str:
    """The text without its code blocks (links and headings in code are not links or headings)."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\]\([^)]*\)", "", text).replace("[", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return {slug(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def make_parts(command: str) -> tuple[list[str], list[str]] | None:
    """(targets, VAR=value arguments) of a `make` command, or None for another program."""
    words = shlex.split(command)  # a quoted value (COMPARE="a b") is one argument, as the shell reads it
    if words[0] != "make":
        return None
    args = [w for w in words[1:] if "=" in w]
    targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
    return targets or ["help"], args


def recipe(target: str) -> str:
    """The recipe lines of a Makefile target (the rule, not its target-specific variable lines)."""
    lines = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    rule = re.compile(rf"^(?:[\w.-]+ )*{re.escape(target)}(?: [\w.-]+)*:(?!=)(?!\s*[A-Z_]+\s*[:?+]?=)")
    for i, line in enumerate(lines):
        if rule.match(line):
            body = []
            for following in lines[i + 1:]:
                if not following.startswith("\t"):
                    break
                body.append(following)
            return "\n".join(body)
    raise AssertionError(f"no rule for `make {target}` in the Makefile")


def make_mention(target: str) -> re.Pattern[str]:
    """`make train`, `["make", "train"`, `make("train", ...)`, `make -s eval-select` ..."""
    return re.compile(rf"\bmake\b[^\n]{{0,60}}?[\s\"'(]{re.escape(target)}(?![\w-])")


def mentions(command: str) -> list[re.Pattern[str]]:
    """What a test file must name to exercise the command: its make target, or the step its recipe
    exists for (the last module or script it runs; a recipe that runs none: the targets it makes);
    for another program, the program and its subcommand."""
    parts = make_parts(command)
    if parts is None:
        program = command.split("&&")[-1].split()
        name = Path(program[0]).name
        return [re.compile(re.escape(f"{name} {program[1]}")),
                re.compile(re.escape(f"{name}.tools.{program[1]}"))]
    patterns = []
    for target in parts[0]:
        patterns.append(make_mention(target))
        body = recipe(target)
        steps = re.findall(r"-m ([a-z_]+(?:\.\w+)+)|\b((?:tools|benchmarks)/\w+)\.(?:py|sh)\b", body)
        if not steps:
            patterns += [make_mention(sub) for sub in re.findall(r"\$\(MAKE\)(?: -s)? ([a-z][\w-]*)", body)]
            continue
        module, script = steps[-1]
        if module:
            parent, leaf = module.rsplit(".", 1)
            patterns += [re.compile(re.escape(module)), re.compile(re.escape(module.replace(".", "/"))),
                         re.compile(rf"from {re.escape(parent)} import [^\n]*\b{leaf}\b")]
        else:
            patterns += [re.compile(re.escape(script)), re.compile(re.escape(script.replace("/", ".")))]
    return patterns


README_COMMANDS = list(dict.fromkeys(shell_commands(README.read_text(encoding="utf-8"))))


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; the why belongs in docs/"


@pytest.mark.parametrize("page", [README, *DOCS, *COMPANIONS], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_relative_to(REPO_ROOT) or not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO_ROOT)}")
    assert not broken, f"{page.relative_to(REPO_ROOT)}: " + "; ".join(broken)


def test_the_readme_has_commands_and_the_table_no_stale_ones() -> None:
    assert "make demo" in README_COMMANDS and "make test" in README_COMMANDS
    stale = sorted(set(COMMAND_TESTS) - set(README_COMMANDS))
    assert not stale, f"COMMAND_TESTS lists commands README no longer has: {stale}"


@pytest.mark.parametrize("command", README_COMMANDS)
def test_every_readme_command_is_exercised_by_a_test(command: str) -> None:
    assert command in COMMAND_TESTS, (
        f"README command {command!r} is not in COMMAND_TESTS: name the test that runs it "
        "(or move the command to docs/)")
    where = COMMAND_TESTS[command]
    if where == MAKE_TEST:
        targets = make_parts(command)
        assert targets is not None, f"{command!r} is not a make command"
        runs = recipe("test")
        ran = [t == "test" or re.search(rf"\$\(MAKE\) {re.escape(t)}(?![\w-])", runs) for t in targets[0]]
        assert all(ran), f"`make test` does not run {command!r}"
        assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
        return
    path, _, name = where.partition("::")
    source = (REPO_ROOT / path).read_text(encoding="utf-8")
    assert re.search(rf"^(?:async )?def {re.escape(name)}\(", source, re.M), f"no test {name} in {path}"
    patterns = mentions(command)
    assert any(p.search(source) for p in patterns), (
        f"{path} never mentions what {command!r} runs (looked for: {[p.pattern for p in patterns]})")


def test_the_command_finder_reads_blocks_as_a_shell_does() -> None:
    text = "\n".join([
        "```bash", "make a   # comment", "# only a comment", "", "CFG=x.py", "make b \\", "  X=1", "```",
        "```python", "make c", "```", "```", "make d", "```",
    ])
    assert shell_commands(text) == ["make a", "make b X=1"]
    assert make_parts("make eval-style BASE=x") == (["eval-style"], ["BASE=x"])
    assert slug("Model selection: `make eval-select`") == "model-selection-make-eval-select"
    assert make_mention("chat").search('run("make", "chat-cpu")') is None
    assert make_mention("chat-cpu").search('["make", "chat-cpu", f"MODEL={m}"]')
