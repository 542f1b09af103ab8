"""Interrupted steps leave nothing behind (style_tune/core/io.py, style_tune/core/steps.py).

What the next run removes (only its own step's stale temporaries: by name, owner and lock), what it
leaves (a temporary another running process holds, anything not its own), Ctrl-C as one line and exit
130, merge's free-space check, and the kill-point matrix of `make split`. The steps of the train env
(train, convert, merge, tiny-model) have their matrix in tests/train/test_recipe.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import kill_points
import pytest

from style_tune.core import io
from style_tune.train import merge

REPO_ROOT = Path(__file__).resolve().parents[2]
SWEPT = "t: removed what an interrupted run left beside {target}: {names}"


def holder(path: Path) -> subprocess.Popen[str]:
    """Another process holding the lock on PATH (as a running step holds its temporary's), until killed."""
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('locked', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_the_next_run_removes_what_interrupted_runs_left(tmp_path: Path, capsys) -> None:
    final = tmp_path / "merged"
    stale = [tmp_path / ".merged.tmp-4242-ab12cd34", tmp_path / ".merged.tmp-x9y8z7w6"]  # new and old names
    for directory in stale:
        (directory / "sub").mkdir(parents=True)
        (directory / "sub" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".merged.4242-ab12cd34.tmp").write_text("half")  # the file writer's
    with io.atomic_dir(final, step="t") as tmp:
        assert sorted(p.name for p in tmp_path.iterdir()) == [tmp.name]
        (tmp / "done").write_text("yes")
    names = ".merged.4242-ab12cd34.tmp, .merged.tmp-4242-ab12cd34/, .merged.tmp-x9y8z7w6/"
    assert capsys.readouterr().err == SWEPT.format(target=final, names=names) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    with io.atomic_dir(final, force=True, step="t"):  # nothing left: nothing said
        pass
    assert capsys.readouterr().err == ""


def test_what_is_not_a_stale_temporary_of_this_output_is_never_touched(tmp_path: Path, monkeypatch,
                                                                       capsys) -> None:
    others = [".merged.tmp-too_long_name", "merged.tmp-ab12cd34", ".merged2.tmp-ab12cd34",
              ".merged.tmp-AB12CD34", ".merged.tmp-ab12cd3", ".other.tmp-ab12cd34",
              ".merged.json.ab12cd34.tmp", ".merged.lock"]
    for name in others:
        (tmp_path / name).mkdir()
    (tmp_path / ".merged.tmp-ab12cd34").symlink_to(tmp_path / "merged.tmp-ab12cd34")  # a link: not followed
    io.sweep_temporaries(tmp_path / "merged", "t")
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, ".merged.tmp-ab12cd34"])
    # the right name but another owner: left alone
    (tmp_path / ".merged.tmp-ab12cd35").mkdir()
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    io.sweep_temporaries(tmp_path / "merged", "t")
    assert (tmp_path / ".merged.tmp-ab12cd35").is_dir()


def test_a_bare_file_name_is_written_beside_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    """`--readme README.md`: a target with no directory part; its own temporary is not another run's."""
    monkeypatch.chdir(tmp_path)
    io.write_atomically(Path("README.md"), "text\n")
    io.write_atomically(Path("README.md"), "again\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == "again\n"


def test_a_temporary_another_run_still_writes_is_left_and_stops_this_run(tmp_path: Path, capsys) -> None:
    final = tmp_path / "merged"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(gone.stdout)  # the run that made it has ended; another process holds its lock
    busy = tmp_path / f".merged.tmp-{pid}-ab12cd34"
    (busy / "part").mkdir(parents=True)
    other = holder(busy)
    try:
        with pytest.raises(SystemExit) as info, io.atomic_dir(final, step="t"):
            pytest.fail("the block ran beside another run's temporary")
        assert info.value.code == 1
        assert capsys.readouterr().err == (
            f"t: error: another run (pid {pid}) is writing {final} (its temporary {busy.name} is "
            "in use); wait for it to finish, or stop it and run this again\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == [busy.name]  # ours removed, theirs kept
        assert (busy / "part").is_dir()
        with pytest.raises(SystemExit):
            io.write_atomically(tmp_path / "merged", "x", step="t")  # the file writer asks the same
    finally:
        other.kill()
        other.wait()
    with io.atomic_dir(final, step="t"):  # its holder is gone: stale now
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_a_fresh_unlocked_temporary_of_a_live_process_is_its(tmp_path: Path, capsys) -> None:
    """The moment between creating a temporary and locking it: a live pid and a young temporary are
    another run's; the same name from a dead process, or an old one, is stale."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        young = tmp_path / f".out.tmp-{sleeper.pid}-ab12cd34"
        young.mkdir()
        with pytest.raises(SystemExit):
            io.sweep_temporaries(tmp_path / "out", "t")
        assert young.is_dir()
        old = time.time() - 3600
        os.utime(young, (old, old))
        io.sweep_temporaries(tmp_path / "out", "t")  # an hour old: a reused pid, not a run
        assert not young.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    capsys.readouterr()


def test_the_sweep_goes_on_past_what_it_leaves(tmp_path: Path, monkeypatch, capsys) -> None:
    """A link, or a temporary that vanished between the listing and its lock (its run just finished), is
    passed over; the stale temporaries after it are still removed."""
    (tmp_path / ".merged.tmp-ab12cd34").symlink_to(tmp_path)
    for name in (".merged.tmp-ab12cd35", ".merged.tmp-ab12cd36", ".merged.tmp-ab12cd37"):
        (tmp_path / name).mkdir()
    real_try_lock = io._try_lock

    def vanished(path: Path) -> int | None:
        if path.name == ".merged.tmp-ab12cd35":
            raise FileNotFoundError(path)
        return real_try_lock(path)

    monkeypatch.setattr(io, "_try_lock", vanished)
    io.sweep_temporaries(tmp_path / "merged", "t")
    names = ".merged.tmp-ab12cd36/, .merged.tmp-ab12cd37/"
    assert capsys.readouterr().err == SWEPT.format(target=tmp_path / "merged", names=names) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".merged.tmp-ab12cd34", ".merged.tmp-ab12cd35"]
    with pytest.raises(OSError):  # a lock is never taken through a link
        real_try_lock(tmp_path / ".merged.tmp-ab12cd34")


def test_a_locked_temporary_of_an_earlier_version_is_another_runs_too(tmp_path: Path, capsys) -> None:
    busy = tmp_path / ".merged.tmp-ab12cd34"  # no pid in the name: what versions before the sweep left
    busy.mkdir()
    other = holder(busy)
    try:
        with pytest.raises(SystemExit):
            io.sweep_temporaries(tmp_path / "merged", "t")
    finally:
        other.kill()
        other.wait()
    assert capsys.readouterr().err == (
        f"t: error: another run (pid ?) is writing {tmp_path / 'merged'} (its temporary {busy.name} is in "
        "use); wait for it to finish, or stop it and run this again\n")
    young = tmp_path / ".out.tmp-1-ab12cd34"  # pid 1 runs on every machine: a young temporary is its
    young.mkdir()
    with pytest.raises(SystemExit):
        io.sweep_temporaries(tmp_path / "out", "t")
    capsys.readouterr()


def test_a_zombie_is_not_alive_whatever_its_name(tmp_path: Path, monkeypatch) -> None:
    """A zombie's temporaries are stale; a process whose name holds ") Z" is not taken for one; without
    /proc the kernel is asked (someone else's process: alive)."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{zombie.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_text().rpartition(")")[2].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    odd = tmp_path / "a) Z b"  # the process's name (its executable's) in /proc/PID/stat's parentheses
    odd.symlink_to(shutil.which("sleep"))
    # SIGHUP as by default, so that a hang-up is seen as one: under nohup (or any parent that ignores it) the
    # child would inherit the ignoring, and a mutant that sends it instead of asking would go unseen
    sleeper = subprocess.Popen([str(odd), "60"],
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        assert not io._alive(zombie.pid)
        assert io._alive(sleeper.pid)
        real_read_text = Path.read_text

        def no_proc(path: Path, *args, **kwargs) -> str:
            if str(path).startswith("/proc/"):
                raise OSError("no /proc")
            return real_read_text(path, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", no_proc)
        assert io._alive(sleeper.pid)
        with pytest.raises(subprocess.TimeoutExpired):  # asked, not signalled
            sleeper.wait(timeout=0.5)
        zombie.wait()
        assert not io._alive(zombie.pid)  # reaped: gone

        def someone_elses(pid: int, signal: int) -> None:
            raise PermissionError(pid)

        monkeypatch.setattr(io.os, "kill", someone_elses)
        assert io._alive(sleeper.pid)
        monkeypatch.undo()
    finally:
        sleeper.kill()
        sleeper.wait()
        zombie.wait()


def test_ctrl_c_stops_the_tool_and_says_one_line(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the tool a step runs (here one that would print a traceback)
    ignores it, the step stops it and says one line, exit 130, the tool gone."""
    child_pid = tmp_path / "child.pid"
    tool = f"import os, time; open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    step = ("import sys; from style_tune.core.steps import main_of, run; "
            f"main_of('t', lambda: run('t', [sys.executable, '-c', {tool!r}]))")
    proc = subprocess.Popen([sys.executable, "-c", step], cwd=REPO_ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=kill_points.as_in_a_terminal)
    deadline = time.monotonic() + 30
    while not (child_pid.exists() and child_pid.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr == "t: interrupted (Ctrl-C); nothing half-written was kept; run the same command again\n"
    with pytest.raises(ProcessLookupError):
        os.kill(int(child_pid.read_text()), 0)


def test_merge_checks_free_space_before_loading_anything(tmp_path: Path, monkeypatch, capsys) -> None:
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 3 * 2**20)
    (base / "model-00002-of-00002.safetensors").write_bytes(b"\0" * 2**20)
    (adapter / "adapter_config.json").write_text("{}")
    out = tmp_path / "not" / "yet" / "merged"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(merge.shutil, "disk_usage", lambda path: usage(2**40, 0, 2**20))  # 1 MiB free
    with pytest.raises(SystemExit) as info:
        merge.main([str(base), str(adapter), str(out)])
    assert info.value.code == 1
    assert capsys.readouterr().err == (
        f"merge: error: {tmp_path} has 0.00 GiB free; the merged model needs about 0.07 GiB (the size of "
        f"{base}'s weights): free some space, or set MERGED= to a disk with room\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "base"]
    needed = 4 * 2**20 + merge.SPARE_BYTES
    monkeypatch.setattr(merge.shutil, "disk_usage", lambda path: usage(2**40, 0, needed))
    monkeypatch.setattr(merge, "merge", lambda *args: "float32")  # enough room: on to the merge itself
    assert merge.main([str(base), str(adapter), str(out)]) == 0


# ---------------------------------------------------------------------------------- make split, killed


@pytest.fixture(scope="module")
def split_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted `make split` (its changes recorded) and its output."""
    root = tmp_path_factory.mktemp("split_reference")
    proc = kill_points.make(["split", f"SPLIT_DIR={root}/out"], root=root, log=root.parent / "split.log")
    assert proc.returncode == 0, proc.stderr
    return root / "out", root.parent / "split.log"


@pytest.mark.parametrize("point", ["early", "middle", "late"])
def test_split_killed_then_rerun_equals_an_uninterrupted_run(split_reference, tmp_path: Path, point) -> None:
    reference, log = split_reference
    at = kill_points.points(log)[point]
    left, _ = kill_points.kill_and_rerun(["split", f"SPLIT_DIR={tmp_path}/out"], root=tmp_path, at=at)
    assert kill_points.tree(tmp_path / "out") == kill_points.tree(reference)
    print(f"kill point: split {point} ({kill_points.describe(log, at)}): left {left or 'nothing'}; "
          "the rerun exits 0, byte for byte the uninterrupted run's, nothing left")


def test_split_ctrl_c_says_one_line_and_leaves_nothing(split_reference, tmp_path: Path) -> None:
    at = kill_points.points(split_reference[1])["middle"]
    proc = kill_points.make(["split", f"SPLIT_DIR={tmp_path}/out"], root=tmp_path,
                            log=tmp_path.parent / f"{tmp_path.name}.log", at=at, sig="INT")
    kill_points.interrupted_cleanly(proc, "split")
    assert kill_points.leftovers(tmp_path) == []
