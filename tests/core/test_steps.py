"""The step wrappers' own logic, standard library only: style_tune/core/steps.py and the checks of
style_tune/train/train.py and style_tune/train/convert.py (inputs, checkpoint choice, resume arguments, the
command they build, atomic outputs). What XTuner does with those commands is tested end to end in
tests/train/test_recipe.py; here ``run`` is replaced where it would start XTuner, to record the
command line (and, for convert, to play XTuner's part of writing the adapter files).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import stat
import sys
import threading
import time
import types
import zipfile
from pathlib import Path

import pytest
from train_stand_ins import stand_in_xtuner_train, train_inputs

from style_tune.core import defaults, io, steps
from style_tune.core.train_logs import STYLE_SCORES

REPO_ROOT = Path(__file__).resolve().parents[2]


# Imported by their module names (the installed package): mutation testing
# (`make mutation`) tells mutants apart by those module names.
train = importlib.import_module("style_tune.train.train")
convert = importlib.import_module("style_tune.train.convert")


def checkpoint(path: Path) -> None:
    """A stand-in checkpoint file: a complete zip archive, as torch.save writes (never unpickled here)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"")


def exits(capsys: pytest.CaptureFixture[str], function, *args, **kwargs) -> str:
    """Call ``function``, which must exit with status 1; return the one line it wrote to stderr."""
    with pytest.raises(SystemExit) as info:
        function(*args, **kwargs)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


# --- style_tune/core/steps.py ------------------------------------------------------------------------


def test_fail_says_one_line_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert exits(capsys, steps.fail, "merge", "no adapter") == "merge: error: no adapter"


def test_run_streams_and_returns_on_success(capsys: pytest.CaptureFixture[str]) -> None:
    steps.run("train", [sys.executable, "-c", "import os; print('hi', os.environ['STEP_VAR'])"],
              env={"STEP_VAR": "set"})
    out = capsys.readouterr().out
    # the command line is announced; the child writes to the real stdout, not through sys.stdout
    assert out.startswith(f"train: $ {sys.executable} -c import os;") and "hi set" not in out
    assert os.environ.get("STEP_VAR") is None


def test_run_passes_the_environment_through(tmp_path: Path) -> None:
    marker = tmp_path / "seen"
    code = (f"import os, pathlib; "
            f"pathlib.Path({str(marker)!r}).write_text(os.environ['A'] + os.environ['PATH'][:1])")
    steps.run("x", [sys.executable, "-c", code], env={"A": "a"})
    assert marker.read_text() == "a" + os.environ["PATH"][:1]


def test_run_fails_with_the_command_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    line = exits(capsys, steps.run, "convert", [sys.executable, "-c", "raise SystemExit(3)", "ignored"])
    name = Path(sys.executable).name
    assert line == (
        f"convert: error: `{name} -c raise SystemExit(3) ...` failed with exit code 3 (its output is above)"
    )


def test_main_of_exits_with_the_code_of_main_and_after_ctrl_c_with_one_line_and_130(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        steps.main_of("t", lambda: 3)
    assert info.value.code == 3 and capsys.readouterr().err == ""

    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        steps.main_of("t", interrupted)
    assert info.value.code == 130
    assert capsys.readouterr().err == (
        "t: interrupted (Ctrl-C); nothing half-written was kept; run the same command again\n")
    with pytest.raises(SystemExit) as info:
        steps.main_of("train", interrupted, after_ctrl_c="the checkpoints so far are kept")
    assert info.value.code == 130
    assert capsys.readouterr().err == "train: interrupted (Ctrl-C); the checkpoints so far are kept\n"


def test_run_stops_the_tool_on_ctrl_c_and_passes_the_interrupt_on(tmp_path: Path) -> None:
    """Ctrl-C while a tool runs (SIGINT to this process, as a terminal sends it): the tool, started with
    SIGINT ignored (a tool's own traceback would bury the step's line), is stopped with SIGTERM and the
    KeyboardInterrupt goes on to main_of. In this process, so that mutation testing sees it; the whole
    process group as a terminal signals it: tests/core/test_interrupted_steps.py."""
    seen = tmp_path / "seen"
    tool = ("import os, signal, sys, time\n"
            "def stop(*_):\n    open(sys.argv[1], 'a').write(' SIGTERM')\n    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN\n"
            "open(sys.argv[1], 'w').write(f'{os.getpid()} {ignored}')\n"
            "time.sleep(60)\n")

    done = threading.Event()  # the run ended otherwise: no Ctrl-C then

    def ctrl_c() -> None:
        deadline = time.monotonic() + 30
        while not (seen.exists() and seen.read_text()) and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.01)
        if not done.is_set():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # Python's own Ctrl-C handler (a shell's background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=ctrl_c)
    try:
        thread.start()
        with pytest.raises(KeyboardInterrupt):
            steps.run("t", [sys.executable, "-c", tool, str(seen)])
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGINT, previous)
    pid, ignored, stopped_by = seen.read_text().split()
    assert (ignored, stopped_by) == ("True", "SIGTERM")
    with pytest.raises(ProcessLookupError):  # ended and reaped
        os.kill(int(pid), 0)


def test_iter_checkpoints_numeric_order_and_only_checkpoints(tmp_path: Path) -> None:
    for name in ("iter_10.pth", "iter_2.pth", "iter_3.pth.tmp", "iter_x.pth", "xiter_4.pth", "iter_5.pt",
                 "last_checkpoint", "iter_07.pth"):
        (tmp_path / name).write_bytes(b"")
    assert steps.iter_checkpoints(tmp_path) == [
        (2, tmp_path / "iter_2.pth"), (7, tmp_path / "iter_07.pth"), (10, tmp_path / "iter_10.pth")
    ]
    assert steps.iter_checkpoints(tmp_path / "missing") == []
    (tmp_path / "file").write_text("")
    assert steps.iter_checkpoints(tmp_path / "file") == []


def test_atomic_dir_renames_when_done(tmp_path: Path) -> None:
    final = tmp_path / "deep" / "out"
    with io.atomic_dir(final, step="t") as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".out.tmp-") and not final.exists()
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.txt").write_text("done")
    assert (final / "sub" / "f.txt").read_text() == "done"
    assert [p.name for p in final.parent.iterdir()] == ["out"]


def test_atomic_dir_gives_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with io.atomic_dir(tmp_path / "out", step="t") as tmp:
            (tmp / "f").write_text("x")
            (tmp / "f").chmod(0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "f").stat().st_mode) == 0o644


def test_atomic_dir_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), io.atomic_dir(tmp_path / "out", step="t") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_to_replace_without_force(tmp_path: Path, capsys) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("kept")
    line = exits(capsys, lambda: io.atomic_dir(final, step="merge").__enter__())
    assert line == (
        f"merge: error: {final} already exists; remove it or pass --force (make: FORCE=1) to replace it"
    )
    assert (final / "old").read_text() == "kept"
    with io.atomic_dir(final, force=True, step="merge") as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# --- style_tune/train/train.py -----------------------------------------------------------------------------


@pytest.fixture()
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    return train_inputs(tmp_path, monkeypatch)


def test_train_checks_pass_on_good_inputs(inputs: dict[str, Path], capsys) -> None:
    train.check_inputs(inputs["config"])
    assert capsys.readouterr().err == ""


def test_train_checks_pass_without_environment_paths(inputs, monkeypatch, capsys) -> None:
    monkeypatch.delenv("STYLE_TUNE_MODEL")
    monkeypatch.delenv("STYLE_TUNE_DATA")
    train.check_inputs(inputs["config"])  # the config's own defaults apply
    assert capsys.readouterr().err == ""


def test_train_refuses_a_missing_config(inputs, capsys) -> None:
    missing = inputs["config"].with_name("nope.py")
    assert exits(capsys, train.check_inputs, missing) == (
        f"train: error: config {missing} not found (see xtuner_configs/)"
    )
    assert exits(capsys, train.check_inputs, inputs["model"]) == (  # a directory is no config
        f"train: error: config {inputs['model']} not found (see xtuner_configs/)"
    )


def test_train_refuses_a_model_without_config_json(inputs, capsys) -> None:
    (inputs["model"] / "config.json").unlink()
    assert exits(capsys, train.check_inputs, inputs["config"]) == (
        f"train: error: model directory {inputs['model']} has no config.json; run `make download` "
        "(or `make tiny-model`)"
    )


def test_train_refuses_missing_data(inputs, capsys) -> None:
    inputs["data"].unlink()
    inputs["data"].mkdir()  # a directory is no data file
    assert exits(capsys, train.check_inputs, inputs["config"]) == (
        f"train: error: training data {inputs['data']} not found; run `make split`"
    )


def test_train_refuses_a_missing_validation_split(inputs, monkeypatch, capsys) -> None:
    val = inputs["data"].with_name("val.json")
    val.unlink()
    assert exits(capsys, train.check_inputs, inputs["config"]) == (
        f"train: error: validation split {val} not found: the style score at every save asks its prompts; "
        "`make split` writes val.json beside train.json, or VAL_DATA= names one"
    )
    elsewhere = inputs["model"] / "val.json"  # VAL_DATA=: a split whose train.json (the judge's) is missing
    elsewhere.write_text("[]")
    monkeypatch.setenv("STYLE_TUNE_VAL_DATA", str(elsewhere))
    assert exits(capsys, train.check_inputs, inputs["config"]) == (
        f"train: error: {inputs['model'] / 'train.json'} not found: the style score's judge learns from the "
        f"train.json beside the validation split {elsewhere} (`make split` writes both)"
    )
    monkeypatch.delenv("STYLE_TUNE_DATA")  # the config's own training file; VAL_DATA= is still checked
    monkeypatch.setenv("STYLE_TUNE_VAL_DATA", str(val))
    said = exits(capsys, train.check_inputs, inputs["config"])
    assert said.startswith(f"train: error: validation split {val} not found")


def test_train_refuses_an_unknown_visualizer(inputs, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STYLE_TUNE_VIS", "tensorboard,wandb")
    assert exits(capsys, train.check_inputs, inputs["config"]) == (
        "train: error: unknown visualizer backend wandb in VIS= (STYLE_TUNE_VIS); known: tensorboard (the "
        "local scalars.json is always written)"
    )
    monkeypatch.setenv("STYLE_TUNE_VIS", "local tensorboard")
    train.check_inputs(inputs["config"])
    assert defaults.config_vis() == ("tensorboard",)


def test_train_reads_the_data_format_from_the_first_line(inputs, capsys) -> None:
    """`make split`'s indented JSON array, JSON-lines rows and undecodable bytes are no preference pairs."""
    for text in (b'[\n  {"conversation": []}\n]', b'{"conversation": []}\n', b"\xff\xfe{\n"):
        inputs["data"].write_bytes(text)
        train.check_inputs(inputs["config"])
        assert capsys.readouterr().err == ""


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_configs_train_on_pairs_from_a_merged_model(inputs, capsys, method: str) -> None:
    config = inputs["config"].with_name(f"qwen2_5_tiny_lora_{method}_style_cpu.py")
    config.write_text("")
    data = inputs["data"]  # a split's training file: no pairs
    assert exits(capsys, train.check_inputs, config) == (
        f"train: error: {data}: row 1: not a JSON object: {config.name} trains on preference pairs, one JSON "
        "object a line (`make prefs` writes them)")
    data.write_text(json.dumps({"prompt": [{"role": "user", "content": "q"}],
                                "chosen": [{"role": "assistant", "content": "c"}],
                                "rejected": [{"role": "assistant", "content": "r"}]}) + "\n")
    train.check_inputs(config)
    assert capsys.readouterr().err == ""
    assert exits(capsys, train.check_inputs, inputs["config"]) == (  # pairs given to an SFT config
        f"train: error: {data} holds preference pairs, but cfg.py is an SFT config: give DATA= a split "
        "(data/<mode>/train.json), or CONFIG= a *_dpo_* / *_orpo_* config")
    (inputs["model"] / "config.json").unlink()
    assert exits(capsys, train.check_inputs, config) == (
        f"train: error: model directory {inputs['model']} has no config.json; the merged SFT model DPO / "
        "ORPO start from: `make train convert merge` with the controllable SFT config first")
    data.unlink()
    (inputs["model"] / "config.json").write_text("{}")
    assert exits(capsys, train.check_inputs, config) == (
        f"train: error: training data {data} not found; run `make prefs`")


def test_deepspeed_without_a_gpu_is_one_line(monkeypatch, capsys) -> None:
    """torch's answer to "is there a CUDA GPU?" given here (this env has no torch): without one, DEEPSPEED=
    stops before anything starts; the train env's tests/train/test_multiprocess.py asks the real torch."""
    cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    line = exits(capsys, train.check_deepspeed, "deepspeed_zero2")
    assert line == (
        "train: error: DEEPSPEED=deepspeed_zero2 needs a CUDA GPU (XTuner's DeepSpeed path asks the GPU for "
        "bf16 support and mmengine's launcher sets a CUDA device); this machine has none: train without "
        "DEEPSPEED= here (NPROC_PER_NODE=2 runs two processes on the CPU)")
    cuda.is_available = lambda: True
    train.check_deepspeed("deepspeed_zero2")
    assert capsys.readouterr().err == ""


def test_resume_args(tmp_path: Path, capsys) -> None:
    assert train.resume_args(tmp_path) == []
    assert train.resume_args(tmp_path / "not yet") == []  # the first run: no work dir
    assert capsys.readouterr().out == ""
    for n in (4, 12, 8):
        checkpoint(tmp_path / f"iter_{n}.pth")
    assert train.resume_args(tmp_path) == ["--resume", str(tmp_path / "iter_12.pth")]
    assert capsys.readouterr().out == f"train: resuming from {tmp_path / 'iter_12.pth'} (iteration 12)\n"


def test_resume_removes_a_checkpoint_a_kill_cut_short(tmp_path: Path, capsys) -> None:
    """A kill in the middle of saving iter_8.pth leaves a file without the zip directory torch.save writes
    last: resuming from it would fail. It goes (one line) and training resumes from iter_4.pth."""
    checkpoint(tmp_path / "iter_4.pth")
    checkpoint(tmp_path / "iter_8.pth")
    whole = (tmp_path / "iter_8.pth").read_bytes()
    (tmp_path / "iter_8.pth").write_bytes(whole[: len(whole) // 2])
    assert not steps.checkpoint_complete(tmp_path / "iter_8.pth")
    assert train.resume_args(tmp_path) == ["--resume", str(tmp_path / "iter_4.pth")]
    assert capsys.readouterr().out.splitlines() == [
        f"train: removed {tmp_path / 'iter_8.pth'}: an interrupted run left it cut short",
        f"train: resuming from {tmp_path / 'iter_4.pth'} (iteration 4)",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_4.pth"]
    (tmp_path / "iter_4.pth").write_bytes(b"")  # cut before its first byte: nothing left to resume from
    assert train.resume_args(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_resume_removes_a_best_checkpoint_a_kill_cut_short(tmp_path: Path, capsys) -> None:
    """mmengine's best checkpoint (saved after a score) cut short goes too: the resumed run scores that
    iteration again and saves it; a whole one stays."""
    checkpoint(tmp_path / "iter_8.pth")
    checkpoint(tmp_path / "best_style_sane_margin_iter_4.pth")
    (tmp_path / "best_style_sane_margin_iter_8.pth").write_bytes(b"PK\x03\x04 cut")
    assert train.resume_args(tmp_path) == ["--resume", str(tmp_path / "iter_8.pth")]
    assert capsys.readouterr().out.splitlines()[0] == (
        f"train: removed {tmp_path / 'best_style_sane_margin_iter_8.pth'}: an interrupted run left it cut "
        "short")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_style_sane_margin_iter_4.pth", "iter_8.pth"]


def test_a_deepspeed_checkpoint_directory_counts_as_complete(tmp_path: Path) -> None:
    (tmp_path / "iter_3.pth").mkdir()
    assert steps.checkpoint_complete(tmp_path / "iter_3.pth")


def test_launcher_single_process(inputs) -> None:
    assert train.launcher(["cfg.py", "--x"]) == [sys.executable, "-m", "xtuner.tools.train", "cfg.py", "--x"]


@pytest.mark.parametrize(("env", "expected"), [
    ({"NPROC_PER_NODE": "2", "PORT": "29500"},
     ["--nnodes=1", "--node_rank=0", "--nproc_per_node=2", "--master_addr=127.0.0.1", "--master_port=29500"]),
    ({"NNODES": "2", "NODE_RANK": "1", "ADDR": "10.0.0.1", "PORT": "1234"},
     ["--nnodes=2", "--node_rank=1", "--nproc_per_node=1", "--master_addr=10.0.0.1", "--master_port=1234"]),
])
def test_launcher_torchrun(inputs, monkeypatch, tmp_path: Path, env: dict, expected: list[str]) -> None:
    script = tmp_path / "xtuner_train.py"
    stand_in_xtuner_train(monkeypatch, script)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cmd = train.launcher(["cfg.py", "--work-dir", "w"])
    assert cmd == [str(Path(sys.executable).with_name("torchrun")), *expected, str(script),
                   "cfg.py", "--work-dir", "w", "--launcher", "pytorch"]


def test_launcher_picks_a_port_when_none_is_given(inputs, monkeypatch, tmp_path: Path) -> None:
    stand_in_xtuner_train(monkeypatch, tmp_path / "t.py")
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    ports = {int(arg.split("=")[1]) for arg in train.launcher([]) if arg.startswith("--master_port=")}
    assert len(ports) == 1 and 20000 <= ports.pop() <= 29999


def recording_run(calls: list, write=None):
    def run(step: str, cmd: list[str], env=None) -> None:
        calls.append((step, list(cmd)))
        if write is not None:
            write(cmd)
    return run


def test_train_main_builds_the_xtuner_command(inputs, monkeypatch, capsys) -> None:
    work = inputs["work_dir"]
    calls: list = []
    def xtuner_writes_a_checkpoint(cmd: list[str]) -> None:
        work.mkdir()
        checkpoint(work / "iter_3.pth")

    monkeypatch.setattr(train, "run", recording_run(calls, xtuner_writes_a_checkpoint))
    # the GPU check needs torch (test_deepspeed_without_a_gpu_is_one_line); here: that it is asked
    checked: list[str] = []
    monkeypatch.setattr(train, "check_deepspeed", checked.append)
    script = work.with_name("xtuner_train.py")
    stand_in_xtuner_train(monkeypatch, script)
    monkeypatch.setenv("PORT", "29500")
    argv = [str(inputs["config"]), "--work-dir", str(work), "--deepspeed", "deepspeed_zero2", "--",
            "--cfg-options", "a=1", "--seed", "3"]
    assert train.main(argv) == 0
    # DeepSpeed in one process: under torchrun all the same, which sets the ranks DeepSpeed reads
    assert calls == [("train", [
        str(Path(sys.executable).with_name("torchrun")), "--nnodes=1", "--node_rank=0", "--nproc_per_node=1",
        "--master_addr=127.0.0.1", "--master_port=29500", str(script), str(inputs["config"]),
        "--work-dir", str(work), "--deepspeed", "deepspeed_zero2", "--cfg-options", "a=1", "--seed", "3",
        "--launcher", "pytorch",
    ])]
    assert capsys.readouterr().out == f"train: done; checkpoints in {work}\n"
    assert checked == ["deepspeed_zero2"]


def test_train_main_resumes_and_passes_no_extra(inputs, monkeypatch) -> None:
    work = inputs["work_dir"]
    work.mkdir()
    checkpoint(work / "iter_2.pth")
    calls: list = []
    monkeypatch.setattr(train, "run", recording_run(calls))
    assert train.main([str(inputs["config"]), "--work-dir", str(work)]) == 0
    assert calls[0][1][3:] == [
        str(inputs["config"]), "--work-dir", str(work), "--resume", str(work / "iter_2.pth")
    ]


def test_train_main_fails_when_no_checkpoint_was_written(inputs, monkeypatch, capsys) -> None:
    monkeypatch.setattr(train, "run", recording_run([]))
    work = inputs["work_dir"]
    line = exits(capsys, train.main, [str(inputs["config"]), "--work-dir", str(work)])
    assert line == f"train: error: training ended but wrote no checkpoint in {work}"


def test_train_main_checks_inputs_before_running(inputs, monkeypatch, capsys) -> None:
    calls: list = []
    monkeypatch.setattr(train, "run", recording_run(calls))
    inputs["data"].unlink()
    exits(capsys, train.main, [str(inputs["config"]), "--work-dir", str(inputs["work_dir"])])
    assert calls == []


# --- style_tune/train/convert.py -------------------------------------------------------------------


def test_pick_checkpoint(tmp_path: Path, capsys) -> None:
    for n in (2, 10, 4):
        checkpoint(tmp_path / f"iter_{n}.pth")
    assert convert.pick_checkpoint(tmp_path, None) == (10, tmp_path / "iter_10.pth")
    assert convert.pick_checkpoint(tmp_path, 4) == (4, tmp_path / "iter_4.pth")
    assert exits(capsys, convert.pick_checkpoint, tmp_path, 3) == (
        f"convert: error: {tmp_path}/iter_3.pth not found; checkpoints there: 2, 4, 10"
    )
    empty = tmp_path / "empty"
    assert exits(capsys, convert.pick_checkpoint, empty, None) == (
        f"convert: error: no iter_*.pth checkpoint in {empty}; run `make train` first"
    )


def xtuner_writes(*names: str):
    """Play pth_to_hf's part: write the named files into the output directory it was given."""
    def write(cmd: list[str]) -> None:
        out = Path(cmd[-2])
        for name in names:
            (out / name).write_text("{}")
    return write


def test_convert_main(tmp_path: Path, monkeypatch, capsys) -> None:
    config, work = tmp_path / "cfg.py", tmp_path / "work"
    config.write_text("")
    work.mkdir()
    checkpoint(work / "iter_5.pth")
    calls: list = []
    monkeypatch.setattr(convert, "run", recording_run(calls, xtuner_writes(*convert.ADAPTER_FILES)))
    assert convert.main([str(config), "--work-dir", str(work)]) == 0
    out = work / "iter_5_hf"
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    (step, cmd), = calls
    assert step == "convert" and cmd[:5] == [sys.executable, "-m", "xtuner.tools.model_converters.pth_to_hf",
                                            str(config), str(work / "iter_5.pth")]
    assert Path(cmd[5]).parent == work and cmd[6:] == ["--safe-serialization"]
    assert capsys.readouterr().out.endswith(
        f"convert: adapter from {work / 'iter_5.pth'} (config {config}) written to {out}\n")
    # a second run refuses to replace it, unless forced; --out and --iter are used
    exits(capsys, convert.main, [str(config), "--work-dir", str(work)])
    # the config training ran, as mmengine dumped it into the work dir, wins over the file given
    (work / config.name).write_text("")
    calls.clear()
    assert convert.main([str(config), "--work-dir", str(work), "--force"]) == 0
    (step, cmd), = calls
    assert cmd[3] == str(work / config.name)
    other = tmp_path / "adapter"
    assert convert.main([str(config), "--work-dir", str(work), "--iter", "5", "--out", str(other)]) == 0
    assert (other / "adapter_config.json").is_file()


def test_convert_fails_without_adapter_files_and_leaves_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    config, work = tmp_path / "cfg.py", tmp_path / "work"
    config.write_text("")
    work.mkdir()
    checkpoint(work / "iter_1.pth")
    monkeypatch.setattr(convert, "run", recording_run([], xtuner_writes("adapter_config.json")))
    line = exits(capsys, convert.main, [str(config), "--work-dir", str(work)])
    assert line == f"convert: error: XTuner wrote no adapter_model.safetensors; is {config} a LoRA config?"
    assert sorted(p.name for p in work.iterdir()) == ["iter_1.pth"]


def test_convert_refuses_a_checkpoint_a_kill_cut_short(tmp_path: Path, monkeypatch, capsys) -> None:
    config, work = tmp_path / "cfg.py", tmp_path / "work"
    config.write_text("")
    work.mkdir()
    (work / "iter_8.pth").write_bytes(b"PK\x03\x04 cut")
    calls: list = []
    monkeypatch.setattr(convert, "run", recording_run(calls))
    line = exits(capsys, convert.main, [str(config), "--work-dir", str(work)])
    assert line == (f"convert: error: {work / 'iter_8.pth'} is cut short (an interrupted training run, or "
                    "not a checkpoint); run `make train` again: it removes it and resumes")
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cfg.py", "work"]


def record(work: Path, *bests: dict) -> None:
    """A style_scores.jsonl whose lines name these bests."""
    lines = [{"iter": 4 * (i + 1), "checkpoint": f"iter_{4 * (i + 1)}.pth", "metrics": {}, "best": best}
             for i, best in enumerate(bests)]
    (work / STYLE_SCORES).write_text("".join(json.dumps(line) + "\n" for line in lines))


def convert_inputs(tmp_path: Path, *iterations: int) -> tuple[Path, Path]:
    """A config file and a work dir with checkpoints of these iterations."""
    config, work = tmp_path / "cfg.py", tmp_path / "work"
    config.write_text("")
    work.mkdir()
    for n in iterations:
        checkpoint(work / f"iter_{n}.pth")
    return config, work


def test_convert_iter_best_takes_the_record_s_last_best(tmp_path: Path, monkeypatch, capsys) -> None:
    config, work = convert_inputs(tmp_path, 4, 8)
    args = [str(config), "--work-dir", str(work), "--iter", "best"]
    calls: list = []
    monkeypatch.setattr(convert, "run", recording_run(calls, xtuner_writes(*convert.ADAPTER_FILES)))
    assert exits(capsys, convert.main, args) == (
        f"convert: error: no {STYLE_SCORES} in {work}: ITER=best needs a run scored at its saves (the "
        "shipped configs score every save); convert by iteration instead: ITER=N")
    record(work, {"iter": None, "checkpoint": None, "why": "none qualifies"})
    assert exits(capsys, convert.main, args) == (
        f"convert: error: no best checkpoint in {work}: none qualifies; convert by iteration instead: ITER=N")
    record(work, {"iter": None, "checkpoint": None, "why": "none"},
           {"iter": 4, "checkpoint": "best_style_sane_margin_iter_4.pth", "why": "the widest margin"})
    assert exits(capsys, convert.main, args) == (
        f"convert: error: {work / 'best_style_sane_margin_iter_4.pth'} not found, though "
        f"{work / STYLE_SCORES} names it as the best checkpoint")
    checkpoint(work / "best_style_sane_margin_iter_4.pth")
    assert convert.main(args) == 0 and calls[0][1][-3] == str(work / "best_style_sane_margin_iter_4.pth")
    out = capsys.readouterr().out
    assert ("convert: the best checkpoint by the style score: best_style_sane_margin_iter_4.pth (iteration "
            "4): the widest margin") in out and f"written to {work / 'iter_4_hf'}" in out
    with pytest.raises(SystemExit):
        convert.main([str(config), "--work-dir", str(work), "--iter", "newest"])
    assert "'newest' is neither an iteration number nor 'best'" in capsys.readouterr().err


def test_convert_refuses_a_missing_config(tmp_path: Path, monkeypatch, capsys) -> None:
    calls: list = []
    monkeypatch.setattr(convert, "run", recording_run(calls))
    missing = tmp_path / "nope.py"
    line = exits(capsys, convert.main, [str(missing), "--work-dir", str(tmp_path)])
    assert line == f"convert: error: config {missing} not found" and calls == []


# --- what the command line and the order of output say ------------------------------------------


def test_announcements_come_before_the_child_output(tmp_path: Path) -> None:
    """Through a pipe (make's output in CI), the `step: $ command` and `resuming from` lines are
    flushed before XTuner's own output, not after it."""
    import subprocess

    checkpoint(tmp_path / "iter_2.pth")
    code = (
        "import sys, importlib\n"
        "steps = importlib.import_module('style_tune.core.steps')\n"
        "train = importlib.import_module('style_tune.train.train')\n"
        f"train.resume_args(__import__('pathlib').Path({str(tmp_path)!r}))\n"
        "steps.run('s', [sys.executable, '-c', 'print(\"child\")'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe: block-buffered
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"train: resuming from {tmp_path / 'iter_2.pth'} (iteration 2)",
        f"s: $ {sys.executable} -c print(\"child\")",
        "child",
    ]


def test_train_needs_a_work_dir(inputs, monkeypatch, capsys) -> None:
    monkeypatch.setattr(train, "run", recording_run([]))
    with pytest.raises(SystemExit) as info:
        train.main([str(inputs["config"])])
    assert info.value.code == 2
    assert "the following arguments are required: --work-dir" in capsys.readouterr().err


def test_train_reads_sys_argv(inputs, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(train, "run", recording_run(calls))
    work = inputs["work_dir"]
    work.mkdir()
    checkpoint(work / "iter_1.pth")
    monkeypatch.setattr(sys, "argv", ["train.py", str(inputs["config"]), "--work-dir", str(work)])
    assert train.main() == 0
    assert calls[0][1][3:6] == [str(inputs["config"]), "--work-dir", str(work)]


def test_convert_needs_a_work_dir(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        convert.main([str(tmp_path)])
    assert info.value.code == 2
    assert "the following arguments are required: --work-dir" in capsys.readouterr().err


def test_convert_uses_the_iteration_asked_for(tmp_path: Path, monkeypatch, capsys) -> None:
    config, work = convert_inputs(tmp_path, 2, 5)
    calls: list = []
    monkeypatch.setattr(convert, "run", recording_run(calls, xtuner_writes(*convert.ADAPTER_FILES)))
    assert convert.main([str(config), "--work-dir", str(work), "--iter", "2"]) == 0
    assert calls[0][1][4] == str(work / "iter_2.pth") and (work / "iter_2_hf").is_dir()
    # the existing adapter is refused by name, as the convert step
    line = exits(capsys, convert.main, [str(config), "--work-dir", str(work), "--iter", "2"])
    assert line.startswith(f"convert: error: {work / 'iter_2_hf'} already exists;")


def test_convert_names_every_missing_adapter_file(tmp_path: Path, monkeypatch, capsys) -> None:
    config, work = tmp_path / "cfg.py", tmp_path / "work"
    config.write_text("")
    work.mkdir()
    checkpoint(work / "iter_1.pth")
    monkeypatch.setattr(convert, "run", recording_run([]))
    line = exits(capsys, convert.main, [str(config), "--work-dir", str(work)])
    assert line == (f"convert: error: XTuner wrote no adapter_config.json, adapter_model.safetensors; "
                    f"is {config} a LoRA config?")
