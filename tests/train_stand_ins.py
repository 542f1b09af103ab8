"""Stand-ins for `make train`'s wrapper tests (tests/core/test_steps.py, tests/train/test_multiprocess.py):
the inputs train.py checks, and a stand-in for xtuner.tools.train, whose file is all the launcher reads."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

#: What the launcher reads from the environment (NNODES, NPROC_PER_NODE, ... as `xtuner train` does).
LAUNCH_VARIABLES = ("NNODES", "NPROC_PER_NODE", "NODE_RANK", "ADDR", "PORT")


def train_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unset: tuple[str, ...] = ()
                 ) -> dict[str, Path]:
    """A model dir, a data file (with a val.json beside it) and a config that pass train.check_inputs; the
    launch variables unset."""
    model, data, config = tmp_path / "model", tmp_path / "train.json", tmp_path / "cfg.py"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data.write_text("[]")
    (tmp_path / "val.json").write_text("[]")  # the split the style score asks, beside the training data
    config.write_text("")
    monkeypatch.setenv("STYLE_TUNE_MODEL", str(model))
    monkeypatch.setenv("STYLE_TUNE_DATA", str(data))
    for name in (*LAUNCH_VARIABLES, "STYLE_TUNE_VAL_DATA", "STYLE_TUNE_VIS", *unset):
        monkeypatch.delenv(name, raising=False)
    return {"model": model, "data": data, "config": config, "work_dir": tmp_path / "work"}


def stand_in_xtuner_train(monkeypatch: pytest.MonkeyPatch, script: Path) -> None:
    """Only xtuner.tools.train's file location is used by the launcher: a stand-in module gives it."""
    module = ModuleType("xtuner.tools.train")
    module.__file__ = str(script)
    for name in ("xtuner", "xtuner.tools"):
        monkeypatch.setitem(sys.modules, name, ModuleType(name))
    monkeypatch.setitem(sys.modules, "xtuner.tools.train", module)
    sys.modules["xtuner.tools"].train = module
    sys.modules["xtuner"].tools = sys.modules["xtuner.tools"]
