"""Style-evaluation metrics: plain functions, no OpenCompass (style_tune/style_eval.py wires them in).

Every score is a percentage (0-100) unless it is a length. What each one means:

style (a judge: TF-IDF character 1-3-grams + logistic regression, trained on the train split's replies)
    judge_accuracy   the judge's own accuracy on the held-out reference replies: how far to trust it
    style_accuracy   seed mode: the reply starts with a valid style label AND the judge reads the reply
                     text as that style; controllable mode: the judge reads the reply as the requested style
                     (the judge has two classes: text in neither style, e.g. a neutral assistant reply or
                     random tokens, still gets one of them, so in controllable mode about 50 is chance)
    label_rate       seed mode: replies whose first line is exactly a style label (温柔 / 毒舌)
    label_agreement  seed mode: of the labelled replies, those the judge reads as the announced style
    judged_gentle    replies the judge reads as 温柔 (the references: about 50); 0 or 100 = one style only
content (against the reference reply, label line removed; best of the prompt's references)
    chrf             sacrebleu's chrF (character 1-6-grams, beta 2), corpus level
    rouge_l          ROUGE-L F1 over Chinese-aware tokens (each CJK character or symbol one token, a
                     run of ASCII letters/digits one token), mean over replies
fluency / sanity (reply text: label line removed)
    length_mean, length_p50, length_p90   reply length in characters, whitespace excluded
    distinct_1, distinct_2   unique token 1-/2-grams over all n-grams of all replies (100 = no repeats)
    empty_rate       replies with no text (after the label line)
    runaway_rate     replies that used the whole token budget (max_out_len): cut off, never ended
"""

from __future__ import annotations

import json
import math
import re
import statistics
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from style_tune.prompts import QWEN_DEFAULT_SYSTEM, STYLE_SYSTEMS, STYLES, split_label

#: The metrics :func:`score_replies` returns, per mode, in report order.
METRICS: dict[str, tuple[str, ...]] = {
    "seed": ("style_accuracy", "label_rate", "label_agreement", "judged_gentle", "judge_accuracy",
             "chrf", "rouge_l", "length_mean", "length_p50", "length_p90", "distinct_1", "distinct_2",
             "empty_rate", "runaway_rate"),
    "controllable": ("style_accuracy", "judged_gentle", "judge_accuracy", "chrf", "rouge_l",
                     "length_mean", "length_p50", "length_p90", "distinct_1", "distinct_2",
                     "empty_rate", "runaway_rate"),
}

#: One line per metric: what it measures and its range (the report's legend).
METRIC_HELP: dict[str, str] = {
    "style_accuracy": "seed: starts with a style label and the judge reads the reply as that style; "
                      "controllable: the judge reads it as the requested style, where text in neither "
                      "style lands on one anyway, so about 50 is chance (0-100, higher is better)",
    "label_rate": "replies whose first line is a valid style label 温柔/毒舌 (0-100)",
    "label_agreement": "of the labelled replies, those the judge reads as the announced style (0-100)",
    "judged_gentle": "replies the judge reads as 温柔 (0-100; the references: about 50; 0 or 100: one "
                     "style only)",
    "judge_accuracy": "the judge's accuracy on the held-out reference replies: how far to trust it (0-100)",
    "chrf": "chrF vs the reference reply, character 1-6-grams, corpus level (0-100, higher = closer)",
    "rouge_l": "ROUGE-L F1 vs the reference reply, Chinese character tokens (0-100, higher = closer)",
    "length_mean": "mean reply length, characters (compare with the references)",
    "length_p50": "median reply length, characters",
    "length_p90": "90th-percentile reply length, characters",
    "distinct_1": "unique token unigrams / all unigrams over all replies (0-100, low = repetitive)",
    "distinct_2": "unique token bigrams / all bigrams over all replies (0-100, low = repetitive)",
    "empty_rate": "replies with no text after the label line (0-100, lower is better)",
    "runaway_rate": "replies cut off at the token budget max_out_len, never ended (0-100, lower is better)",
}

# ------------------------------------------------------------------------------------ data rows

_STYLE_BY_SYSTEM = {text: style for style, text in STYLE_SYSTEMS.items()}


def row_mode(system: str | None) -> str:
    """The data format a row's system text belongs to (see style_tune.prompts.system_text)."""
    if system in (None, "", QWEN_DEFAULT_SYSTEM):
        return "seed"
    if system in _STYLE_BY_SYSTEM:
        return "controllable"
    raise ValueError(f"unknown system text {system!r}: not one that style_tune.prompts writes")


def requested_style(system: str | None) -> str | None:
    """The style a controllable-mode system text asks for (None in seed mode)."""
    return _STYLE_BY_SYSTEM.get(system or "")


def row_style_reply(turn: dict) -> tuple[str, str]:
    """(style, reply text) of a data row's first turn: the label line in seed mode, the system text
    in controllable mode."""
    label, reply = split_label(turn["output"])
    if row_mode(turn.get("system")) == "controllable":
        return requested_style(turn.get("system")), turn["output"].strip()
    if label is None:
        raise ValueError(f"seed-mode row without a style label line: {turn['output'][:40]!r}")
    return label, reply


def load_rows(path: str | Path) -> list[dict]:
    """First turns of an XTuner conversation JSON file (tools/split_data.py's format)."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return [row["conversation"][0] for row in rows]


def group_prompts(turns: Iterable[dict], mode: str) -> list[dict]:
    """One sample per distinct prompt (system text + user input), with all its references.

    Seed mode: a prompt's rows carry both styles (the model picks one), so both are references.
    Controllable mode: the system text names the style, so each (style, input) is its own prompt.
    Order: first occurrence in the file.
    """
    samples: dict[tuple[str, str], dict] = {}
    for turn in turns:
        system = turn.get("system") or ""
        if row_mode(system) != mode:
            raise ValueError(f"a {row_mode(system)}-mode row in {mode}-mode data (MODE= must be the "
                             f"mode the split was made with): {turn['input'][:40]!r}")
        key = (system, turn["input"])
        sample = samples.setdefault(key, {
            "system": system, "input": turn["input"],
            "requested_style": requested_style(system) or "", "references": [],
        })
        sample["references"].append(turn["output"])
    return list(samples.values())


# ------------------------------------------------------------------------------- tokenisation

#: A run of ASCII letters/digits is one token; every other non-space character is one token.
_TOKEN = re.compile(r"[A-Za-z0-9]+|\S")


def normalise(text: str) -> str:
    """NFKC (full-width ASCII and punctuation -> half-width), trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def zh_tokens(text: str) -> list[str]:
    """Chinese-aware tokens: each CJK character, punctuation mark or emoji alone; ASCII words whole."""
    return _TOKEN.findall(normalise(text))


def char_length(text: str) -> int:
    """Characters, whitespace excluded."""
    return sum(1 for ch in text if not ch.isspace())


# ------------------------------------------------------------------------------- content scores

def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a)*len(b)))."""
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, references: Sequence[str]) -> float:
    """ROUGE-L F1 (0-100) over :func:`zh_tokens`, the best over the references; 0 for an empty side."""
    hyp = zh_tokens(hypothesis)
    best = 0.0
    for reference in references:
        ref = zh_tokens(reference)
        lcs = lcs_length(hyp, ref)
        if lcs:
            precision, recall = lcs / len(hyp), lcs / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return 100.0 * best


def chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """sacrebleu's chrF (char_order 6, word_order 0, beta 2): (corpus score, sentence scores), 0-100.

    Each hypothesis has its own list of references (any number, the best one counts, as sacrebleu
    does); texts are NFKC-normalised. Character n-grams need no word segmentation, so Chinese works.
    """
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    hyps = [normalise(h) for h in hypotheses]
    refs = [[normalise(r) for r in rs] for rs in references]
    if not hyps:
        return 0.0, []
    width = max(len(rs) for rs in refs)
    streams = [[rs[i] if i < len(rs) else None for rs in refs] for i in range(width)]
    corpus = metric.corpus_score(hyps, streams).score
    sentences = [metric.sentence_score(h, rs).score for h, rs in zip(hyps, refs, strict=True)]
    return corpus, sentences


# ------------------------------------------------------------------------------- fluency

def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique token n-grams / all token n-grams over all texts (0-100; 0 when there are none)."""
    total, unique = 0, set()
    for text in texts:
        tokens = zh_tokens(text)
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return 100.0 * len(unique) / total if total else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# ------------------------------------------------------------------------------- the style judge

class StyleJudge:
    """Which style a reply is in: TF-IDF character 1-3-grams + logistic regression (scikit-learn).

    Trained on reply texts only (the label line removed), so it judges the words, not the label. A
    text with no character n-gram the judge has seen (empty, or only unseen symbols) gets no verdict.
    """

    def __init__(self, texts: Sequence[str], styles: Sequence[str], seed: int = 0) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if sorted(set(styles)) != sorted(STYLES):
            raise ValueError(f"the judge needs training replies of every style {STYLES}; got {set(styles)}")
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True,
                                          preprocessor=normalise)
        self.classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
        self.classifier.fit(self.vectorizer.fit_transform(list(texts)), list(styles))

    @classmethod
    def from_split(cls, path: str | Path, seed: int = 0) -> StyleJudge:
        """Trained on a split file's reply texts and their styles (either mode)."""
        pairs = [row_style_reply(turn) for turn in load_rows(path)]
        return cls([reply for _, reply in pairs], [style for style, _ in pairs], seed=seed)

    def predict(self, texts: Sequence[str]) -> list[str | None]:
        """The style of each text; None where there is nothing to judge."""
        if not texts:
            return []
        features = self.vectorizer.transform(list(texts))
        styles = self.classifier.predict(features)
        known = features.getnnz(axis=1) > 0
        return [str(style) if ok else None for style, ok in zip(styles, known, strict=True)]

    def accuracy(self, texts: Sequence[str], styles: Sequence[str]) -> float:
        """Accuracy (0-100) on texts of known style."""
        judged = self.predict(texts)
        return 100.0 * sum(j == s for j, s in zip(judged, styles, strict=True)) / max(len(texts), 1)


# ------------------------------------------------------------------------------- all together

def _pct(count: int, total: int) -> float:
    return 100.0 * count / total if total else 0.0


def score_replies(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    requested: Sequence[str | None],
    mode: str,
    judge: StyleJudge,
    token_counts: Sequence[int] | None = None,
    max_out_len: int | None = None,
) -> dict:
    """All metrics (see the module docstring) for generated replies, with per-reply details.

    ``references[i]``: the reference outputs of prompt i, as in the data (label line first in seed
    mode); ``requested[i]``: the style prompt i asks for (controllable mode; None in seed mode);
    ``token_counts[i]``: tokens of prediction i, with ``max_out_len`` the token budget (runaway
    replies); without them runaway_rate is omitted.
    """
    if mode not in METRICS:
        raise ValueError(f"unknown mode {mode!r}")
    n = len(predictions)
    if not (len(references) == len(requested) == n):
        raise ValueError("predictions, references and requested styles differ in length")
    labels, replies = zip(*(split_label(p or "") for p in predictions), strict=True) if n else ((), ())
    ref_pairs = [[split_label(r) for r in refs] for refs in references]
    ref_replies = [[reply for _, reply in pairs] for pairs in ref_pairs]
    judged = judge.predict(list(replies))

    if mode == "seed":
        targets = list(labels)
    else:
        targets = list(requested)
        # the judge's accuracy on the references: their style is the requested one
        ref_pairs = [[(style, reply) for _, reply in pairs] for pairs, style in zip(ref_pairs, requested,
                                                                                       strict=True)]
    hits = [t is not None and j == t for j, t in zip(judged, targets, strict=True)]
    flat_refs = [pair for pairs in ref_pairs for pair in pairs]
    corpus_chrf, sentence_chrf = chrf(list(replies), ref_replies)
    rouge = [rouge_l(reply, refs) for reply, refs in zip(replies, ref_replies, strict=True)]
    lengths = [char_length(reply) for reply in replies]
    empty = [length == 0 for length in lengths]
    runaway = None
    if token_counts is not None and max_out_len:
        runaway = [count >= max_out_len for count in token_counts]

    result: dict = {"style_accuracy": _pct(sum(hits), n)}
    if mode == "seed":
        labelled = [i for i, label in enumerate(labels) if label is not None]
        result["label_rate"] = _pct(len(labelled), n)
        result["label_agreement"] = _pct(sum(hits[i] for i in labelled), len(labelled))
    result["judged_gentle"] = _pct(sum(j == STYLES[0] for j in judged), n)
    result["judge_accuracy"] = judge.accuracy([r for _, r in flat_refs], [s for s, _ in flat_refs])
    result["chrf"] = corpus_chrf
    result["rouge_l"] = statistics.fmean(rouge) if rouge else 0.0
    result["length_mean"] = statistics.fmean(lengths) if lengths else 0.0
    result["length_p50"] = percentile(lengths, 50)
    result["length_p90"] = percentile(lengths, 90)
    result["distinct_1"] = distinct_n(replies, 1)
    result["distinct_2"] = distinct_n(replies, 2)
    result["empty_rate"] = _pct(sum(empty), n)
    if runaway is not None:
        result["runaway_rate"] = _pct(sum(runaway), n)
    result["details"] = [
        {
            "prediction": predictions[i], "label": labels[i], "reply": replies[i],
            "requested": requested[i], "judged": judged[i], "style_hit": hits[i],
            "chrf": sentence_chrf[i], "rouge_l": rouge[i], "length": lengths[i], "empty": empty[i],
            **({"tokens": token_counts[i], "runaway": runaway[i]} if runaway is not None else {}),
        }
        for i in range(n)
    ]
    return result
