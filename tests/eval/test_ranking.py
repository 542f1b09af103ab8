"""The Bradley–Terry ranking of `make verdicts` (style_tune/eval/ranking.py) on verdict files simulated
from known strengths (tests/verdict_sim.py) and on hand-built ones: order, anchor, ties as half a win,
intervals that shrink with more prompts, a reproducible bootstrap, the position and length terms, and
what the table says instead of a number when the data are too thin. Bootstraps of 200 rounds keep it
cheap (users get defaults.RANKING_ROUNDS)."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
from verdict_sim import STRENGTHS, example, lines, simulate

from style_tune.eval import ranking
from style_tune.eval.ranking import ELO_PER_LOGIT, Ranking, design, fit, rank_source
from style_tune.eval.verdicts import main, read, report_section

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 200
#: Where only the fitted ratings (no interval) are checked.
FEW = 20


def verdicts_of(tmp_path: Path, records: list[dict], name: str = "v.jsonl"):
    path = tmp_path / name
    path.write_text(lines(records), encoding="utf-8")
    verdicts, errors = read([path])
    assert errors == []
    return verdicts


def ranked(tmp_path: Path, records: list[dict], *, anchor: str | None = None, seed: int = 0,
           rounds: int = ROUNDS) -> Ranking:
    result = rank_source("people", verdicts_of(tmp_path, records), anchor=anchor, seed=seed, rounds=rounds)
    assert isinstance(result, Ranking), result
    return result


def rows(r: Ranking) -> dict[str, ranking.Row]:
    return {row.model: row for row in r.rows}


def rating(row: ranking.Row) -> float:
    assert row.rating is not None, row.note
    return row.rating


def record(verdict: str, a: str, b: str, prompt: str) -> dict:
    return {"prompt": prompt, "style": None, "verdict": verdict, "rater": "ann",
            "endpoints": {"A": {"name": a}, "B": {"name": b}}}


def test_the_fit_recovers_the_order_and_the_anchor_is_at_1000(tmp_path: Path) -> None:
    r = ranked(tmp_path, simulate(STRENGTHS, 300, 0))
    got = rows(r)
    assert r.anchor == "base" and got["base"].rating == 1000
    assert [row.model for row in r.rows] == sorted(STRENGTHS, key=lambda m: -STRENGTHS[m])
    for model, truth in STRENGTHS.items():
        low, high = got[model].ci or (0, 0)
        assert low <= truth <= high, (model, truth, got[model].ci)
        assert abs(rating(got[model]) - truth) < 40  # 300 prompts: a standard error of ~15 Elo
    # dpo (1250) and orpo (1180) are 70 apart: their intervals overlap, so they share rank 1
    assert (got["dpo"].rank, got["orpo"].rank, got["sft"].rank, got["base"].rank) == (1, 1, 3, 4)
    # another anchor moves every rating by the same amount and nothing else
    other = rows(ranked(tmp_path, simulate(STRENGTHS, 300, 0), anchor="sft", rounds=FEW))
    assert other["sft"].rating == 1000
    for model in STRENGTHS:
        assert rating(other[model]) - rating(other["sft"]) == pytest.approx(
            rating(got[model]) - rating(got["sft"]), abs=1e-6)


def test_a_tie_counts_as_half_a_win(tmp_path: Path) -> None:
    """x against y, 50 times each of: 3 wins + 1 loss, 2 wins + 2 ties, 2 wins + 1 loss + 1 tie, shown in
    both orders equally. With a tie as half a win the first two are the same score (3 of 4: 400 log10 3 =
    191 Elo), the third 2.5 of 4 (400 log10 5/3 = 89 Elo); a tie ignored would make the second a
    one-sided record, a tie as a loss would make it even."""
    def difference(outcomes: list[str]) -> float:
        recs = []
        for n in range(50):
            for k, outcome in enumerate(outcomes):
                flip = (n + k) % 2 == 1
                verdict = {"x": "B" if flip else "A", "y": "A" if flip else "B", "tie": "tie"}[outcome]
                recs.append(record(verdict, *(("y", "x") if flip else ("x", "y")), f"p{n}-{k}"))
        d = design(verdicts_of(tmp_path, recs), ["x", "y"])
        coef = fit(d)
        assert coef is not None
        return float(coef[0] - coef[1]) * ELO_PER_LOGIT

    assert difference(["x", "x", "x", "y"]) == pytest.approx(400 * math.log10(3), abs=1)
    assert difference(["x", "x", "tie", "tie"]) == pytest.approx(400 * math.log10(3), abs=1)
    assert difference(["x", "x", "y", "tie"]) == pytest.approx(400 * math.log10(5 / 3), abs=1)
    assert difference(["tie"] * 4) == pytest.approx(0, abs=1e-6)


def test_all_ties_give_equal_ratings_and_both_bad_is_counted_apart(tmp_path: Path) -> None:
    recs = simulate({"base": 1000, "sft": 1200, "dpo": 1300}, 60, 3)
    recs += [record("tie", *(("base", "twin") if n % 2 else ("twin", "base")), f"t{n}") for n in range(30)]
    recs += [record("both bad", "sft", "dpo", f"b{n}") for n in range(12)]
    r = ranked(tmp_path, recs)
    got = rows(r)
    # 30 ties with base, nothing else: base's rating (up to the weak prior's pull, under an Elo point)
    assert got["twin"].rating == pytest.approx(1000, abs=1)
    # a resample draws the two orders unevenly and the position term tilts the ties a little
    assert got["twin"].ci is not None and got["twin"].ci[0] <= 1000 <= got["twin"].ci[1]
    assert got["twin"].ci[1] - got["twin"].ci[0] < 40
    assert (got["twin"].ties, got["sft"].both_bad, got["dpo"].both_bad) == (30, 12, 12)
    assert got["sft"].verdicts == 2 * 60 + 12 and got["base"].verdicts == 2 * 60 + 30
    # "both bad" is left out of the fit: the same ratings without those lines
    without = rows(ranked(tmp_path, [x for x in recs if x["verdict"] != "both bad"], rounds=FEW))
    assert without["dpo"].rating == pytest.approx(got["dpo"].rating, abs=1e-6)


def test_intervals_shrink_as_the_prompts_grow(tmp_path: Path) -> None:
    def widths(prompts: int) -> dict[str, float]:
        r = ranked(tmp_path, simulate(STRENGTHS, prompts, 5))
        return {row.model: row.ci[1] - row.ci[0] for row in r.rows if row.ci and row.model != "base"}

    few, many = widths(30), widths(300)
    assert few.keys() == many.keys() == {"sft", "dpo", "orpo"}
    for model in few:  # ten times the prompts: about a third of the width
        assert many[model] < 0.5 * few[model], (model, few[model], many[model])


def test_the_bootstrap_resamples_prompts_not_verdicts(tmp_path: Path) -> None:
    """Four raters who agree on every prompt add no evidence about other prompts: resampling prompts (every
    verdict on one moving together) keeps the interval's width; resampling single verdicts would halve it
    (four times the verdicts)."""
    def widths(copies: int) -> dict[str, float]:
        recs = [{**r, "rater": f"r{k}"} for r in simulate(STRENGTHS, 40, 5) for k in range(copies)]
        r = ranked(tmp_path, recs)
        return {row.model: row.ci[1] - row.ci[0] for row in r.rows if row.ci and row.model != "base"}

    one, four = widths(1), widths(4)
    assert one.keys() == four.keys() == {"sft", "dpo", "orpo"}
    for model in one:
        assert 0.75 * one[model] < four[model] < 1.33 * one[model], (model, one[model], four[model])


def test_the_bootstrap_is_reproducible_from_its_seed(tmp_path: Path) -> None:
    recs = simulate(STRENGTHS, 40, 2, position=50)
    one, again, other = (ranked(tmp_path, recs, seed=s) for s in (7, 7, 8))
    cis = [[(row.ci, row.length_ci) for row in r.rows] + [r.position.ci] for r in (one, again, other)]
    assert cis[0] == cis[1]
    assert cis[0] != cis[2]
    assert [row.rating for row in one.rows] == [row.rating for row in other.rows]  # the fit has no seed


def test_the_position_term_recovers_a_planted_bias(tmp_path: Path) -> None:
    biased = ranked(tmp_path, simulate(STRENGTHS, 200, 4, position=120))
    assert biased.position.ci is not None and biased.position.value is not None
    assert biased.position.ci[0] <= 120 <= biased.position.ci[1] and biased.position.ci[0] > 0
    fair = ranked(tmp_path, simulate(STRENGTHS, 200, 4))
    assert fair.position.ci is not None and fair.position.ci[0] < 0 < fair.position.ci[1]
    # base always shown as A against each other model (as the page with BLIND=0 shows it): the position
    # cannot be told from the ratings (a cycle of orders, e.g. x over y over z over x, would still tell it)
    fixed = [record("A" if n % 3 else "B", "base", other, f"p{n}") for other in ("sft", "dpo")
             for n in range(30)]
    pinned = ranked(tmp_path, fixed, rounds=FEW)
    assert pinned.position.value is None and "not identifiable" in pinned.position.missing


def test_the_length_view_recovers_a_planted_length_effect(tmp_path: Path) -> None:
    r = ranked(tmp_path, simulate(STRENGTHS, 200, 6, length=100))
    assert r.length.ci is not None and r.length.ci[0] <= 100 <= r.length.ci[1] and r.length.ci[0] > 0
    assert all(row.length_rating is not None for row in r.rows)
    bare = ranked(tmp_path, simulate(STRENGTHS, 30, 6, replies=False), rounds=FEW)
    assert bare.length.value is None and "carry no replies" in bare.length.missing
    assert all(row.length_rating is None for row in bare.rows)


def test_thin_and_disconnected_models_are_said_not_rated(tmp_path: Path) -> None:
    recs = simulate({"base": 1000, "sft": 1100, "dpo": 1200}, 40, 8)
    recs += simulate({"hosted": 1000, "gpt": 1100}, 40, 9, prefix="h")  # never met the others
    recs += [record("both bad", "base", "loner", f"l{n}") for n in range(20)]  # "both bad" links nothing
    # ckpt: 6 verdicts in the fit
    recs += [record(v, "ckpt", "sft", f"c{n}") for n, v in enumerate(["A", "B", "A", "tie", "B", "A"])]
    recs += [record("A" if n % 2 else "B", *(("champ", "dpo") if n % 2 else ("base", "champ")), f"w{n}")
             for n in range(20)]  # champ won all 20
    path = tmp_path / "thin.jsonl"
    path.write_text(lines(recs), encoding="utf-8")
    r = ranked(tmp_path, recs, rounds=FEW)
    got = rows(r)
    for model in ("hosted", "gpt", "loner"):
        assert got[model].rating is None and got[model].rank is None
        assert got[model].note.startswith("not connected to base's group")
    assert "too few verdicts: 6 in the fit (< 10)" in got["ckpt"].note and got["ckpt"].rating is None
    assert got["champ"].note.startswith("no finite rating: never lost to") and got["champ"].rating is None
    assert {m for m, row in got.items() if row.rating is not None} == {"base", "sft", "dpo"}
    out = tmp_path / "thin.md"
    assert main([str(path), "--out", str(out), "--rounds", str(FEW)]) == 0
    table = out.read_text(encoding="utf-8")
    assert "| — | hosted | — |" in table and "not connected to base's group" in table
    assert "| — | champ | — | 20 | 20 | 0 | 0 | 0 (0%) | — | no finite rating: never lost to" in table


def test_people_and_each_judge_are_fitted_apart_with_their_agreement(tmp_path: Path) -> None:
    people = simulate(STRENGTHS, 40, 10)
    same = [{**r, "rater": None, "judge": "copycat"} for r in people]
    contrary = [{**r, "rater": None, "judge": "contrarian",
                 "verdict": {"A": "B", "B": "A"}.get(r["verdict"], r["verdict"])} for r in people]
    path = tmp_path / "all.jsonl"
    path.write_text(lines(people + same + contrary), encoding="utf-8")
    out = tmp_path / "all.md"
    assert main([str(path), "--out", str(out), "--rounds", str(FEW)]) == 0
    table = out.read_text(encoding="utf-8")
    for heading in ("people", "judge copycat", "judge contrarian", "Agreement between raters"):
        assert f"### {heading}\n" in table
    decided = sum(r["verdict"] in "AB" for r in people)
    assert f"| people | judge copycat | {decided} of {decided}: 100% [" in table
    assert "| 1.00 over 4 models |" in table
    assert f"| people | judge contrarian | 0 of {decided}: 0% [" in table
    assert "| -1.00 over 4 models |" in table


def test_files_figure_and_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "session.jsonl"
    path.write_text(lines(simulate(STRENGTHS, 20, 11)) + '{"verdict": "A"\n', encoding="utf-8")
    out = tmp_path / "report" / "verdicts.md"
    out.parent.mkdir()
    assert main([str(path), "--out", str(out), "--rounds", "50"]) == 1  # a bad line: exit 1, counted rest
    captured = capsys.readouterr()
    assert f"verdicts: {path}:121: not JSON" in captured.err and "Traceback" not in captured.err
    assert "verdicts: ranking people: 120 verdicts, 50 bootstrap rounds" in captured.err  # progress
    png = out.parent / "verdicts_ranking.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![Bradley–Terry ratings with 95 % bootstrap intervals](verdicts_ranking.png)" in out.read_text(
        encoding="utf-8")
    # an ANCHOR that no verdict names is an error, not an empty table
    with pytest.raises(SystemExit) as stop:
        main([str(path), "--anchor", "gpt-4", "--rounds", "10"])
    assert stop.value.code == 1
    assert "verdicts: error: ANCHOR=gpt-4 is none of the models in the verdicts (base, dpo, orpo, sft)" in (
        capsys.readouterr().err)
    # `make report`'s section: the figure next to the report, linked by name
    figure = tmp_path / "report" / "report_ranking.png"
    section = "\n".join(report_section(path, figure=figure, rounds=20))
    assert "## Ranking (Bradley–Terry)" in section and "(report_ranking.png)" in section and figure.is_file()


def test_two_models_get_no_ranking(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "two.jsonl"
    path.write_text(lines(simulate({"base": 1000, "tuned": 1100}, 30, 12)), encoding="utf-8")
    assert main([str(path), "--out", str(tmp_path / "two.md")]) == 0
    out = capsys.readouterr().out
    assert "### tuned vs base" in out and "Ranking" not in out
    assert not (tmp_path / "two_ranking.png").exists()


def test_the_docs_example_is_the_committed_simulation_and_its_table(tmp_path: Path) -> None:
    """docs/serving.md's example table is what `make verdicts` prints for docs/ranking-example.jsonl (200
    rounds, as the docs run it), and that file is tests/verdict_sim.py's example (its strengths are the
    truth the docs compare with)."""
    data = REPO_ROOT / "docs" / "ranking-example.jsonl"
    assert data.read_text(encoding="utf-8") == lines(example())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    figure = tmp_path / "ranking.png"
    proc = subprocess.run(["make", "-s", "verdicts", f"VERDICTS={data}", f"RANKING_FIGURE={figure}",
                           f"RANKING_ROUNDS={ROUNDS}"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    docs = (REPO_ROOT / "docs" / "serving.md").read_text(encoding="utf-8").splitlines()
    section = proc.stdout[proc.stdout.index("## Ranking"):].splitlines()
    shown = [line for line in section if line.startswith(("|", "- "))]
    assert len(shown) == 2 * (2 + 4 + 2) + 3  # two tables of four models and their terms, the agreement
    assert [line for line in shown if line not in docs] == []


def test_an_unreadable_judge_answer_enters_no_ranking(tmp_path: Path) -> None:
    """make verdicts and make leaderboard rank through ranking.rank_all: a judge's unparsable answers are
    counted in the pair tables, never fitted (a model named only by them is no model of the ranking)."""
    judged = [{**r, "rater": None, "judge": "j"} for r in simulate(STRENGTHS, 60, 0)]
    unreadable = {"prompt": "p-x", "style": None, "verdict": None, "unparsable": True, "judge": "j",
                  "endpoints": {"A": {"name": "ghost"}, "B": {"name": "base"}}}
    found = verdicts_of(tmp_path, [*judged, unreadable])
    assert len(ranking.usable(found)) == len(found) - 1
    (only,), reasons = ranking.rank_all(found, anchor=None, seed=0, rounds=FEW)
    assert reasons == {} and "ghost" not in rows(only) and set(rows(only)) == set(STRENGTHS)
