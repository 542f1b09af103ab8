"""Command-line helpers shared by the steps."""

from __future__ import annotations

from collections.abc import Sequence


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(our arguments, the wrapped tool's arguments): ``argv`` split at its first ``--``.

    ``make train TRAIN_ARGS="--cfg-options ..."`` passes ``-- --cfg-options ...``: everything after the
    ``--`` goes to the tool (xtuner, opencompass, lmdeploy) unchanged; without ``--`` there is none.
    """
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]
