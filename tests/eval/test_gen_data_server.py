"""`make gen-data` against a real server: `make serve`'s CPU server on the tiny model (the ``cpu_server``
fixture), behind tests/eval/fault_proxy.py, which injects 429 + Retry-After, 500, dropped connections
and slow replies.

The tiny model's replies are random tokens, so a lenient rule set (written below into a temporary
styles file) keeps the plumbing honest: greedy decoding (temperature 0, 8 tokens), no length, script
or cut-off rules, no judge (tests/eval/test_gen_data.py tests it on real replies); near-duplicates
stay on. With two samples per prompt and
style, greedy decoding gives the same reply twice, so every second sample is a near-duplicate: the
run accepts and rejects rows for known reasons.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import kill_points
import pytest
from fault_proxy import RETRY_AFTER_S, FaultProxy

from style_tune.core.styles import STYLES_FILE
from style_tune.data import generate

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(r"^gen-data: requested (\d+), accepted (\d+), rejected (\d+), failed (\d+)$")
PROMPTS = ["今天又加班到十点，好累", "老板说下周要涨薪", "同事天天吃螺蛳粉", "周末想去爬山", "下雨了没带伞",
           "猫把我的键盘踩坏了"]
TIMEOUT_S = 4.0
MAX_RETRIES = 3


@pytest.fixture(scope="module")
def lenient_styles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = json.loads(STYLES_FILE.read_text(encoding="utf-8"))
    data["defaults"]["generation"] = {"temperature": 0, "max_tokens": 8}
    data["defaults"]["validation"].update(min_chars=1, max_chars=None, min_cjk_share=None,
                                          reject_cut_off=False, sanity=False, leak_min_chars=None,
                                          judge="off", near_duplicate=0.5)
    path = tmp_path_factory.mktemp("styles") / "lenient.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def gen_command(prompts: Path, out: Path, api_base: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "style_tune.data.generate", str(prompts), "--out", str(out),
            "--api-base", api_base, "--timeout", str(TIMEOUT_S), "--max-retries", str(MAX_RETRIES),
            "--no-progress", *extra]


def gen_env(styles: Path) -> dict[str, str]:
    return {**os.environ, "STYLE_TUNE_STYLES": str(styles), "OPENAI_API_KEY": "test-key"}


def run_gen(capsys: pytest.CaptureFixture, prompts: Path, out: Path, api_base: str, styles: Path,
            *extra: str) -> tuple[list[int], str]:
    """The CLI's main, in this process (the imports are paid once); the killed runs are subprocesses."""
    capsys.readouterr()
    code = generate.main(gen_command(prompts, out, api_base, "--styles-file", str(styles), *extra)[3:])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    last = captured.out.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, f"last line {last!r}"
    return [int(n) for n in match.groups()], captured.err


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def journal_lines(out: Path) -> int:
    path = out.with_name(out.stem + ".journal.jsonl")
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_faults_are_retried_and_counts_add_up(cpu_server, lenient_styles: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    prompts = tmp_path / "prompts.txt"
    # P[4] always fails; messy lines: a repeat (full-width !), a URL-only line, a 1-character line
    lines = [PROMPTS[0], PROMPTS[1] + " https://example.com/a?b=1", PROMPTS[2], PROMPTS[3], PROMPTS[5],
             PROMPTS[4], "今天又加班到十点,好累", "https://t.co/x", "嗯"]
    prompts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    faults = {PROMPTS[0]: ["429"], PROMPTS[1]: ["500"], PROMPTS[2]: ["drop"],
              PROMPTS[3]: [f"slow:{TIMEOUT_S + 1}"], PROMPTS[4]: ["500*"]}
    out = tmp_path / "gen.csv"
    with FaultProxy(cpu_server.base_url, faults) as proxy:
        (n, accepted, rejected, failed), log = run_gen(capsys, prompts, out, proxy.base_url, lenient_styles,
                                                        "--samples", "2", "--concurrency", "4")
    with capsys.disabled():
        print(f"\nfault run: requested {n}, accepted {accepted}, rejected {rejected}, failed {failed}")
    assert "9 prompts read, 6 kept (2 had URLs or @handles removed); dropped 3" in log
    assert n == 6 * 2 * 2 and failed == 2 * 2  # the always-failing prompt, both styles, both samples
    assert accepted + rejected + failed == n
    rows, bad = read_csv(out), read_csv(out.with_name("gen.rejected.csv"))
    assert (len(rows), len(bad)) == (accepted, rejected)
    assert all(row["reason"] for row in bad)
    assert {row["user"] for row in rows + bad} == {p for p in PROMPTS if p != PROMPTS[4]}
    # every fault was met by one request, which was sent again and answered; the permanent one
    # exhausted its retries, no more. (Requests are told apart by their seed; on a busy machine a
    # slow answer may add a retry elsewhere, which these checks allow.)
    for fault, user in (("429", PROMPTS[0]), ("500", PROMPTS[1]), ("drop", PROMPTS[2]), ("slow", PROMPTS[3])):
        first, *later = proxy.attempts(user)
        assert first["action"].startswith(fault), first
        assert any(entry["seed"] == first["seed"] for entry in later), f"{fault}: never retried"
        assert len({entry["seed"] for entry in [first, *later]}) == 2 * 2
    always = proxy.attempts(PROMPTS[4])
    assert sorted(Counter(entry["seed"] for entry in always).values()) == [MAX_RETRIES + 1] * 4
    first, *others = proxy.attempts(PROMPTS[0])
    retry = next(entry for entry in others if entry["seed"] == first["seed"])  # the same request again
    assert retry["time"] - first["time"] >= RETRY_AFTER_S - 0.05, "Retry-After not honoured"
    # greedy decoding: the second sample repeats the first, a near-duplicate; nothing else is rejected
    assert accepted == rejected == (n - failed) // 2
    assert all(row["reason"].startswith("near-duplicate: 1.00") for row in bad), bad

    # a rerun without faults asks only the 4 failed requests; what was accepted stays accepted
    with FaultProxy(cpu_server.base_url) as proxy:
        (n2, accepted2, rejected2, failed2), _ = run_gen(capsys, prompts, out, proxy.base_url, lenient_styles,
                                                          "--samples", "2", "--concurrency", "4")
    assert {entry["seed"] for entry in proxy.log} == {entry["seed"] for entry in always}
    assert (n2, failed2, accepted2 + rejected2) == (n, 0, n)
    rows2 = read_csv(out)
    assert [r for r in rows2 if r["user"] != PROMPTS[4]] == rows


def test_sigint_and_sigkill_then_rerun_equal_an_uninterrupted_run(
        cpu_server, lenient_styles: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    reference = tmp_path / "reference.csv"
    with FaultProxy(cpu_server.base_url) as proxy:
        counts, _ = run_gen(capsys, prompts, reference, proxy.base_url, lenient_styles, "--concurrency", "2")
    assert counts[0] == len(PROMPTS) * 2 and counts[3] == 0

    out = tmp_path / "resumed.csv"
    journal = out.with_name("resumed.journal.jsonl")
    with FaultProxy(cpu_server.base_url, delay=0.4) as proxy:
        for sig, answered in ((signal.SIGINT, 2), (signal.SIGKILL, 5)):
            proc = subprocess.Popen(gen_command(prompts, out, proxy.base_url, "--concurrency", "2"),
                                    cwd=ROOT, env=gen_env(lenient_styles), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while journal_lines(out) < answered and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(sig)
            stdout, stderr = proc.communicate(timeout=60)
            assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), stderr[-2000:]
            if sig == signal.SIGINT:
                assert "stopped (SIGINT)" in stderr and "run the same command again" in stderr
            assert not out.exists(), "an interrupted run left an output that looks finished"
            assert journal_lines(out) < len(PROMPTS) * 2
    kept = journal_lines(out)
    with journal.open("ab") as handle:  # a kill in the middle of writing a line
        handle.write(b'{"key": "cut sh')
    with FaultProxy(cpu_server.base_url) as proxy:
        resumed, log = run_gen(capsys, prompts, out, proxy.base_url, lenient_styles, "--concurrency", "2")
    asked = len({entry["seed"] for entry in proxy.log})
    assert asked == len(PROMPTS) * 2 - kept, "the rerun re-asked answered requests"
    assert "dropped 1 line cut short by a kill" in log
    assert resumed == counts
    with capsys.disabled():
        print(f"\nkill-and-resume: {kept} of {counts[0]} answered before the kill, {asked} asked "
              f"after; counts {counts}, outputs identical to the uninterrupted run")
    assert out.read_bytes() == reference.read_bytes()
    assert out.with_name("resumed.rejected.csv").read_bytes() == reference.with_name(
        "reference.rejected.csv").read_bytes()
    assert kill_points.leftovers(tmp_path) == []

    # A kill in the final write, after OUT was renamed into place and before the rejected rows were: the
    # rerun (every answer in the journal: nothing asked) removes the temporary, says so, writes both again.
    command = gen_command(prompts, out, cpu_server.base_url, "--concurrency", "2")
    log = tmp_path.parent / f"{tmp_path.name}.gen.log"
    env = {**kill_points.recording(tmp_path, log), **gen_env(lenient_styles)}
    recorded = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    at = next(n for n, change in enumerate(kill_points.changes(log), 1) if change == f"os.rename {out}")
    env = {**kill_points.recording(tmp_path, log), **gen_env(lenient_styles), "STYLE_TUNE_KILL_AT": str(at)}
    killed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            start_new_session=True)
    assert killed.returncode == -signal.SIGKILL
    (left,) = kill_points.leftovers(tmp_path)
    assert left.startswith(".resumed.rejected.csv.") and left.endswith(".tmp")
    rerun = subprocess.run(command, cwd=ROOT, env=gen_env(lenient_styles), capture_output=True, text=True)
    assert rerun.returncode == 0 and "removed what an interrupted run left" in rerun.stderr, rerun.stderr
    assert kill_points.leftovers(tmp_path) == []
    assert out.read_bytes() == reference.read_bytes()
