"""`make gen-data`'s parts, one job each; the command is style_tune/data/generate.py.

    prompts    the prompts file read and cleaned
    journal    the requests (each keyed by everything its answer depends on) and the journal of answers
    client     the API: the model check, the asking loop (the official async ``openai`` client), the tally
    validate   why a reply is rejected: the style's rules, the style judge, near-duplicates
    output     OUT and OUT.rejected.csv

What they share is here: the step's name in messages and the error for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence

STEP = "gen-data"


class InputError(Exception):
    """Bad input or usage: every problem is one line ``FILE:LINE: column: what is wrong``."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems[0] if problems else "bad input")
        self.problems = list(problems)
