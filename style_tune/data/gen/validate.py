"""gen-data's validation: why a reply is rejected (:func:`validate`, [] = accepted).

Length bounds, cut-off replies, refusals and assistant boilerplate, the style label or the prompt
leaking into the reply, mostly-CJK text, the evaluation's sanity gates, the style's forbidden phrases
and markers (the rules of the styles file); the evaluation's style judge (a reply it reads as another
style is rejected with its probability); and near-duplicates of an earlier accepted reply of the same
style (the data check's measure: character-bigram Jaccard above 0.5).
"""

from __future__ import annotations

import csv
import difflib
import json
import re
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from style_tune import REPO_ROOT
from style_tune.core.styles import Style, StyleSet
from style_tune.data.check import bigrams  # the data check's near-duplicate measure
from style_tune.data.gen import InputError

#: What the style judge learns from unless --judge-data names another CSV: the shipped data.
DEFAULT_JUDGE_DATA = REPO_ROOT / "style_data" / "style_chat_data.csv"


@dataclass(frozen=True)
class Answer:
    """A reply to validate (in output order)."""

    user: str
    style: str
    reply: str
    finish_reason: str | None = "stop"


def _squash(text: str) -> str:
    """For phrase matching: NFKC, lower case, no whitespace or punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def _label_leak(reply: str, labels: Sequence[str]) -> str | None:
    """A style label heading the reply (``温柔：...``, ``【毒舌】``, a label line) or named as a style."""
    text = unicodedata.normalize("NFKC", reply).strip()
    first = text.split("\n", 1)[0].strip()
    for label in labels:
        name = re.escape(label)
        opener = (re.match(rf"^[\[【(「\"'“]\s*{name}\s*[\]】)」\"'”]", first)
                  or re.match(rf"^{name}\s*([:：\-—|]|$)", first))
        if opener or re.search(rf"{re.escape(label)}(风格|模式|语气|版本?)", text) or first == label:
            return label
    return None


def _common_run(a: str, b: str) -> str:
    match = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return a[match.a: match.a + match.size]


def rule_problems(answer: Answer, style: Style, labels: Sequence[str]) -> list[str]:
    """Why one reply breaks its style's rules (every rule but the judge and near-duplicates)."""
    from style_tune.eval.style_metrics import char_length, cjk_share, sanity_problems

    rules = style.rules
    reply = answer.reply.strip()
    if not reply:
        return ["empty: no reply text"]
    problems = []
    if rules.get("reject_cut_off") and answer.finish_reason == "length":
        problems.append("cut off: at max_tokens (finish_reason length)")
    length = char_length(reply)
    if rules.get("min_chars") is not None and length < rules["min_chars"]:
        problems.append(f"too short: {length} < {rules['min_chars']} characters")
    if rules.get("max_chars") is not None and length > rules["max_chars"]:
        problems.append(f"too long: {length} > {rules['max_chars']} characters")
    squashed = _squash(reply)
    for phrase in rules.get("refusals") or ():
        if _squash(phrase) in squashed:
            problems.append(f"refusal or boilerplate: {phrase}")
            break
    leaked = _label_leak(reply, labels)
    if leaked:
        problems.append(f"style label leaks: {leaked}")
    if rules.get("leak_min_chars"):
        normal = unicodedata.normalize("NFKC", reply)
        sources = [("prompt leaks", style.prompt), ("prompt leaks", style.system),
                   *(("copies a few-shot example", reply) for _, reply in style.examples)]
        for what, source in sources:
            run = _common_run(normal, unicodedata.normalize("NFKC", source)).strip()
            if len(run) >= rules["leak_min_chars"]:
                problems.append(f"{what}: {run!r}")
                break
    if rules.get("min_cjk_share") is not None:
        share = cjk_share(reply)
        if share < rules["min_cjk_share"]:
            problems.append(f"not mostly Chinese: CJK share {share:.2f} < {rules['min_cjk_share']}")
    if rules.get("sanity"):
        # the evaluation's gates; script and label lines are the checks above
        problems += [f"sanity: {p}" for p in sanity_problems(reply, answer.user)
                     if p not in ("empty", "script", "label_line")]
    for phrase in rules.get("forbidden") or ():
        if _squash(phrase) in squashed:
            problems.append(f"forbidden phrase: {phrase}")
    markers = rules.get("required_any") or ()
    if markers and not any(_squash(m) in squashed for m in markers):
        problems.append(f"no marker: none of {', '.join(markers)}")
    return problems


def judge_rows(path: Path) -> list[dict[str, str]]:
    """The judge's training rows (``user,style,assistant``, styles of style_tune.core.prompts); every
    style needs replies. :class:`InputError` otherwise (checked before anything is asked)."""
    from style_tune.core.prompts import STYLES

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("style") in STYLES]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError([f"{path}: cannot read the judge's data (--judge-data): {err}"]) from None
    missing = sorted(set(STYLES) - {row["style"] for row in rows})
    if missing or not all(row.get("user") and row.get("assistant") for row in rows):
        raise InputError([f"{path}: the style judge needs a user,style,assistant CSV with replies of "
                          f"every style ({', '.join(STYLES)}; none of {', '.join(missing) or '-'}): give "
                          "one with GEN_ARGS=\"--judge-data FILE\", or \"judge\": null in the styles file"])
    return rows


def judged(style: Style) -> bool:
    """Whether the style judge reads this style's replies (its ``judge`` rule is not off)."""
    return (style.rules.get("judge") or "off") != "off"


def check_judge_data(path: Path, styles: StyleSet, labels: Sequence[str]) -> None:
    """When a style asked is judged, the judge's data: it exists and has replies of every style it
    knows (:func:`judge_rows`). Checked before anything is asked; :class:`InputError` otherwise."""
    if any(judged(styles[label]) for label in labels):
        if not path.is_file():
            raise InputError([f"{path}: no such file (--judge-data: the CSV the style judge learns from)"])
        judge_rows(path)


def load_judge(path: Path, seed: int):
    """The evaluation's style judge, trained on a ``user,style,assistant`` CSV (the shipped data).

    StyleJudge.from_split reads the split tool's JSON; the CSV's rows are given to it in that
    format (controllable mode, so the replies are the cells as they are).
    """
    from style_tune.core.prompts import system_text
    from style_tune.eval.style_metrics import StyleJudge

    turns = [{"conversation": [{"system": system_text("controllable", row["style"]), "input": row["user"],
                                "output": row["assistant"]}]} for row in judge_rows(path)]
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "train.json"
        split.write_text(json.dumps(turns, ensure_ascii=False), encoding="utf-8")
        return StyleJudge.from_split(split, seed=seed)


def judge_verdicts(judge, texts: Sequence[str]) -> list[tuple[str | None, float]]:
    """(verdict, its probability) per text: a style, NEITHER, or None when there is nothing to judge."""
    verdicts = judge.predict(list(texts))
    if not texts:
        return []
    probabilities = judge.classifier.predict_proba(judge.vectorizer.transform(list(texts)))
    classes = [str(c) for c in judge.classifier.classes_]
    return [(v, float(row[classes.index(v)]) if v is not None else 0.0)
            for v, row in zip(verdicts, probabilities, strict=True)]


def near_duplicates(texts: Sequence[str], candidates: Sequence[int], threshold: float,
                    chunk: int = 256) -> dict[int, tuple[int, float]]:
    """For each candidate (in order) that is a near-duplicate of an earlier *kept* candidate: (that
    one, similarity). The data check's measure (style data's near-duplicate gate): the Jaccard index
    of the character-bigram sets, a pair above ``threshold``; computed as sparse products."""
    if len(candidates) < 2:
        return {}
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    sets = CountVectorizer(analyzer=bigrams, binary=True).fit_transform([texts[i] for i in candidates])
    sizes = np.asarray(sets.sum(axis=1)).ravel().astype(np.float64)
    kept = np.zeros(len(candidates), dtype=bool)
    found: dict[int, tuple[int, float]] = {}
    for start in range(0, len(candidates), chunk):
        shared = (sets[start: start + chunk] @ sets.T).toarray().astype(np.float64)
        for offset, row in enumerate(shared):
            i = start + offset
            union = sizes[i] + sizes[:i] - row[:i]
            jaccard = np.divide(row[:i], union, out=np.zeros(i), where=union > 0)
            earlier = np.flatnonzero(kept[:i] & (jaccard > threshold))
            if earlier.size:
                j = int(earlier[np.argmax(jaccard[earlier])])
                found[candidates[i]] = (candidates[j], float(jaccard[j]))
            else:
                kept[i] = True
    return found


def validate(answers: Sequence[Answer], styles: StyleSet, get_judge: Callable[[], Any] | None = None
             ) -> list[list[str]]:
    """The reasons each reply is rejected ([] = accepted), in the order of ``answers``.

    Per-reply rules first; the judge (``get_judge()``, called only when some reply needs it) reads the
    replies that pass them; a reply that passes everything is then compared with the earlier accepted
    ones (near-duplicates keep the first). The judge knows the styles of style_tune.core.prompts; replies of
    any other style are not judged."""
    from style_tune.core.prompts import STYLES as JUDGED_STYLES

    labels = styles.labels
    reasons = [rule_problems(a, styles[a.style], labels) for a in answers]
    asked = [i for i, a in enumerate(answers) if not reasons[i] and a.style in JUDGED_STYLES
             and judged(styles[a.style])]
    if asked and get_judge is not None:
        judge = get_judge()
        for i, (verdict, p) in zip(asked, judge_verdicts(judge, [answers[i].reply for i in asked]),
                                   strict=True):
            style = answers[i].style
            if verdict is not None and verdict in labels and verdict != style:
                reasons[i].append(f"judge: reads as {verdict} (p={p:.2f})")
            elif styles[style].rules["judge"] == "strict" and verdict != style:
                shown = "nothing it knows" if verdict is None else f"neither style (p={p:.2f})"
                reasons[i].append(f"judge: {shown}")
    for label in labels:  # like the data check: replies of the same style are compared
        threshold = styles[label].rules.get("near_duplicate")
        candidates = [i for i, a in enumerate(answers) if a.style == label and not reasons[i]]
        if threshold is None:
            continue
        for i, (j, similarity) in near_duplicates([a.reply.strip() for a in answers], candidates,
                                                  threshold).items():
            reasons[i].append(f"near-duplicate: {similarity:.2f} similar to the {answers[j].style} reply to "
                              f"{answers[j].user[:30]!r}")
    return reasons
