"""The mutation gate's keys and sample (style_tune/dev/mutation.py): a mutant's key names its function and
the change it makes, so an explanation in mutation/README.md stays attached when mutmut renumbers the
function's mutants; the gate's sample is the same for the same mutants. The gate itself runs in `make
test` (mutmut in its own env)."""

from __future__ import annotations

import textwrap

from style_tune.dev import mutation


def mutated(body: list[str], mutants: list[tuple[int, str]], name: str = "f") -> str:
    """Code as mutmut writes a mutated module: the original function, then each numbered mutant."""
    def function(name: str, lines: list[str]) -> str:
        return f"def {name}(a):\n" + "".join(f"    {line}\n" for line in lines)

    code = function(f"x_{name}__mutmut_orig", body)
    for number, (index, line) in enumerate(mutants, start=1):
        code += function(f"x_{name}__mutmut_{number}", [*body[:index], line, *body[index + 1:]])
    return code


def test_a_key_names_the_change_and_survives_renumbering() -> None:
    before = mutation.mutants_of("m", mutated(["b = 1", "return a + b"], [(0, "b = 2"), (1, "return a - b")]))
    assert [m.name for m in before] == ["m.x_f__mutmut_1", "m.x_f__mutmut_2"]
    assert before[1].diff == "-    return a + b\n+    return a - b"
    assert all(m.key.startswith("m.f#") and m.function == "m.x_f" and m.module == "m" for m in before)
    # a line added above and a mutant before them: the numbers move, the keys stay
    after = mutation.mutants_of("m", mutated(["c = 0", "b = 1", "return a + b"],
                                             [(0, "c = 1"), (1, "b = 2"), (2, "return a - b")]))
    assert [m.name for m in after][1:] == ["m.x_f__mutmut_2", "m.x_f__mutmut_3"]
    assert [m.key for m in after][1:] == [m.key for m in before]
    assert after[0].key not in {m.key for m in before}


def test_the_same_change_twice_in_a_function_gets_two_keys() -> None:
    found = mutation.mutants_of("m", mutated(["x = 1", "x = 1"], [(0, "x = 2"), (1, "x = 2")]))
    assert found[1].key == found[0].key + "-2"


def test_the_readme_names_keys_in_backquotes(tmp_path, monkeypatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(textwrap.dedent("""\
        - `style_tune.core.io._umask#0a1b2c`, `style_tune.deploy.batcher.Batcher.submit#abcdef-2`: why.
        - not a key: `style_tune.core.io._umask`, `x_run__mutmut_3`, style_tune.core.io.run#0a1b2c
        """), encoding="utf-8")
    monkeypatch.setattr(mutation, "README", readme)
    assert mutation.explained() == {"style_tune.core.io._umask#0a1b2c",
                                    "style_tune.deploy.batcher.Batcher.submit#abcdef-2"}
    assert mutation.readable("xǁBatcherǁsubmit") == "Batcher.submit"
    assert mutation.readable("x__umask") == "_umask"


def test_the_sample_is_the_same_for_the_same_keys() -> None:
    found = mutation.mutants_of("m", mutated(["b = 1", "return a + b"],
                                             [(0, f"b = {n}") for n in range(2, 12)]))
    picked = mutation.first_by_key(found, 3)
    assert len(picked) == 3 and mutation.first_by_key(list(reversed(found)), 3) == picked


def test_the_gate_takes_a_share_of_each_function_and_every_mutant_of_what_changed(monkeypatch) -> None:
    twenty = [(0, f"b = {n}") for n in range(2, 22)]
    mutants = [*mutation.mutants_of("m", mutated(["b = 1", "return b"], twenty, "f")),
               *mutation.mutants_of("m", mutated(["b = 1", "return b"], twenty, "g"))]
    functions = {"m.x_f": "f1", "m.x_g": "g1"}
    tests = {"tests/t.py::test_a": "a1", "tests/t.py::test_b": "b1", "tests/t.py": "t1",
             mutation.HELPERS: "h1"}
    record = {"functions": functions, "tests": tests,
              "reach": {"tests/t.py::test_a": ["m.x_g"], "tests/t.py::test_b": []}}

    def picked(functions: dict, tests: dict) -> dict[str, int]:
        chosen, _ = mutation.gate_selection(mutants, functions, tests, record)
        return {f: sum(m.function == f for m in chosen) for f in ("m.x_f", "m.x_g")}

    assert picked(functions, tests) == {"m.x_f": 2, "m.x_g": 2}  # a tenth of each, the same each time
    assert picked({**functions, "m.x_g": "g2"}, tests) == {"m.x_f": 2, "m.x_g": 20}
    assert picked(functions, {**tests, "tests/t.py::test_a": "a2"}) == {"m.x_f": 2, "m.x_g": 20}  # its reach
    assert picked(functions, {k: v for k, v in tests.items() if k != "tests/t.py::test_a"}) == {
        "m.x_f": 2, "m.x_g": 20}  # a test gone
    assert picked(functions, {**tests, "tests/t.py::test_b": "b2"}) == {"m.x_f": 2, "m.x_g": 2}
    assert picked(functions, {**tests, "tests/t.py::test_new": "n1"}) == {"m.x_f": 2, "m.x_g": 2}
    assert picked(functions, {**tests, "tests/t.py": "t2"}) == {"m.x_f": 2, "m.x_g": 20}  # its helpers
    assert picked(functions, {**tests, mutation.HELPERS: "h2"}) == {"m.x_f": 20, "m.x_g": 20}
    assert len(mutation.gate_selection(mutants, functions, tests, {})[0]) == 40  # no record
    monkeypatch.setattr(mutation, "GATE_CAP", 5)
    chosen, said = mutation.gate_selection(mutants, {"m.x_f": "f2", "m.x_g": "g2"}, tests, record)
    assert len(chosen) == 4 + 5 and "(of 36: run `make mutation` for all)" in said


def test_a_test_is_hashed_apart_from_its_files_helpers(tmp_path, monkeypatch) -> None:
    path = tmp_path / "tests" / "core" / "t.py"
    path.parent.mkdir(parents=True)
    monkeypatch.setattr(mutation, "REPO_ROOT", tmp_path)

    def hashes(text: str) -> dict[str, str]:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return mutation.test_hashes(["tests/core/t.py"])

    before = hashes("""\
        import pytest
        N = 1
        @pytest.mark.parametrize("x", [1, 2])
        def test_a(x):
            assert x == N
        """)
    assert sorted(before) == ["tests/*.py", "tests/core/t.py", "tests/core/t.py::test_a"]
    assert hashes("""\
        import pytest
        N = 1  # a comment
        @pytest.mark.parametrize("x", [1, 2])
        def test_a(x):

            assert x == N
        """) == before
    after = hashes("""\
        import pytest
        N = 1
        @pytest.mark.parametrize("x", [1])
        def test_a(x):
            assert x == N
        """)
    assert after["tests/core/t.py::test_a"] != before["tests/core/t.py::test_a"]
    assert after["tests/core/t.py"] == before["tests/core/t.py"]
