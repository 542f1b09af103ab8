"""FewCLUE for `make eval-select`: where OpenCompass reads it, and its download (`make fewclue-data`).

    python -m style_tune.eval.fewclue CACHE     download FewCLUE into CACHE/data/FewCLUE (network)

OpenCompass reads CACHE/data/FewCLUE/{bustm,ocnli}/ (CACHE: $COMPASS_DATA_CACHE), or
~/.cache/opencompass/data/FewCLUE/ (its own download).
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The files the model-selection configs read, under data/FewCLUE/.
FILES = ("bustm/dev_few_all", "bustm/test_public", "ocnli/dev_few_all", "ocnli/test_public")


def missing(cache: Path) -> list[Path]:
    """The FewCLUE files found neither under ``cache`` nor in OpenCompass's own cache (as ``cache`` paths)."""
    own = Path.home() / ".cache" / "opencompass"
    return [cache / "data" / "FewCLUE" / f"{name}.json" for name in FILES
            if not any((root / "data" / "FewCLUE" / f"{name}.json").is_file() for root in (cache, own))]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m style_tune.eval.fewclue CACHE", file=sys.stderr)
        return 2
    from opencompass.utils.datasets import download_dataset

    print(download_dataset("data/FewCLUE", str(Path(argv[0]).resolve())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
