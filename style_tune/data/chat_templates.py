#!/usr/bin/env python3
"""Write lmdeploy's chat template files from the one definition in style_tune/core/prompts.py.

    python3 -m style_tune.data.chat_templates [--check] [--root DIR]      (make chat-templates)

Files (relative to the repository root, or to --root):
    style_data/chat_template.json                       label mode
    style_data/chat_template_controllable_gentle.json   controllable mode, style 温柔
    style_data/chat_template_controllable_snarky.json   controllable mode, style 毒舌

Each is ChatML with the mode's system text as ``meta_instruction`` (the system text lmdeploy
writes when a conversation has none), so `lmdeploy chat --chat-template FILE MERGED` builds the
prompt the model was trained on. Files are written atomically and only when they change.
``--check`` writes nothing and exits 1 if any file is missing or differs (the committed copies are
stale): run `make chat-templates` then. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core.io import write_atomically
from style_tune.core.prompts import STYLES, chat_template_file, lmdeploy_chat_template


def expected_files() -> dict[str, str]:
    """{path relative to the repository: file contents} for every chat template."""
    specs: list[tuple[str, str | None]] = [("label", None)] + [("controllable", style) for style in STYLES]
    return {
        chat_template_file(mode, style): json.dumps(lmdeploy_chat_template(mode, style), ensure_ascii=False,
                                                    indent=2) + "\n"
        for mode, style in specs
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="where style_data/ is (default: the repo)")
    args = parser.parse_args(argv)

    stale = []
    for relative, text in expected_files().items():
        path = args.root / relative
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(relative)
        if not args.check:
            write_atomically(path, text)
            print(f"make_chat_templates: wrote {relative}")
    if args.check and stale:
        print(f"make_chat_templates: stale or missing: {', '.join(stale)}; run `make chat-templates`",
              file=sys.stderr)
        return 1
    if not stale:
        print("make_chat_templates: chat templates are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
