"""`make bench-gen-data` (benchmarks/bench_gen_data.py): what it refuses before it starts a server (the run
itself asks the CPU server: the gen-data client's tests in tests/eval cover the code it times)."""

from __future__ import annotations

import pytest

from benchmarks import bench_gen_data


@pytest.mark.parametrize("option", ["--rounds", "--prompts"])
def test_no_rounds_or_no_prompts_is_refused_in_one_line(option: str, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # found by mypy: --rounds 0 ran no round and then stopped with a NameError (the last round's answers)
    monkeypatch.setattr("sys.argv", ["bench_gen_data", "--model", "models/none", option, "0"])
    with pytest.raises(SystemExit) as exit_:
        bench_gen_data.main()
    assert exit_.value.code == 2
    assert "--rounds and --prompts must be at least 1" in capsys.readouterr().err
