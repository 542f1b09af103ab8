"""Style-evaluation metrics: plain functions, no OpenCompass (style_tune/eval/evaluator.py wires them in).

Every score is a percentage (0-100) unless it is a length. A reply counts for style only if it is
*sane* and the judge reads it as the target style (the requested one in controllable mode, the
announced one in label mode). What each number means:

sanity (per reply; :func:`sanity_problems`; text after the label-mode label line)
    sane_rate        replies that pass every gate: not empty, not cut off at the token budget, no
                     line that is a style label (a repeated label), at least MIN_CONTENT_TOKENS
                     tokens once label words are removed, distinct token bigrams >= MIN_DISTINCT_2,
                     CJK share of the letters >= MIN_CJK_SHARE, not a copy of the user's message,
                     tokens in an order the judge's texts know (coherence >= MIN_COHERENCE)
style (a judge: TF-IDF character 1-3-grams + logistic regression over three classes, 温柔 / 毒舌 /
neither, trained on the train split's replies, label words removed, with "neither" learnt from plain
helpful answers (style_data/neutral_replies.txt), the split's user messages and shuffled replies)
    style_accuracy   sane AND judged as the target style (label mode: the reply must also start with
                     a label); random tokens, repeated labels and neutral text score 0
    style_accuracy_gentle, style_accuracy_snarky   the same over the replies meant to be 温柔 / 毒舌
                     (requested in controllable mode, announced in label mode); 0 when there are none
    judged_gentle, judged_snarky, judged_neither   how the judge reads the sane replies, as shares of
                     all replies (the references: about 50 / 50 / 0); insane replies count as neither
    judge_accuracy   the judge's accuracy on the held-out reference replies (it never trained on them)
    label_rate       label mode: replies whose first line is exactly a style label (温柔 / 毒舌)
    label_agreement  label mode: of the labelled replies, those that are style hits
content (against the reference reply, label line removed; best of the prompt's references)
    chrf             sacrebleu's chrF (character 1-6-grams, beta 2), corpus level
    rouge_l          ROUGE-L F1 over Chinese-aware tokens (each CJK character or symbol one token, a
                     run of ASCII letters/digits one token), mean over replies
fluency (reply text: label line removed)
    length_mean, length_p50, length_p90   reply length in characters, whitespace excluded
    distinct_1, distinct_2   unique token 1-/2-grams over all n-grams of all replies (100 = no repeats)
    empty_rate       replies with no text (after the label line)
    runaway_rate     replies that used the whole token budget (max_out_len): cut off, never ended
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core.prompts import (
    MODES,
    QWEN_DEFAULT_SYSTEM,
    STYLE_SLUGS,
    STYLE_SYSTEMS,
    STYLES,
    split_label,
    system_text,
)
from style_tune.core.stats import percentile

#: The judge's third class: text in neither style (neutral, noise, an echo of the prompt).
NEITHER = "neither"
#: Plain helpful answers the judge learns "neither" from (one per line, # comments).
NEUTRAL_REPLIES = REPO_ROOT / "style_data" / "neutral_replies.txt"

# Sanity gates, calibrated on the shipped references (every one of them passes; see the tests):
#: fewest tokens (zh_tokens, punctuation excluded) a reply needs once label words are removed
MIN_CONTENT_TOKENS = 5
#: lowest share of distinct token bigrams within one reply (a loop like 你，你，你， is below it)
MIN_DISTINCT_2 = 0.7
#: lowest share of CJK characters among the letters (CJK + other alphabets) of a reply
MIN_CJK_SHARE = 0.5
#: ROUGE-L F1 against the user's message at or above which a reply is a copy of it
MAX_ECHO_ROUGE = 60.0
#: lowest coherence (:meth:`StyleJudge.coherence`) of a sane reply: held-out references >= -0.12,
#: characters drawn at random from them <= -0.40
MIN_COHERENCE = -0.3
#: the judge says "neither" when its probability for that class is at least this, else it names the
#: likelier style (held-out references: 96.7 % right; held-out neutral answers: 96 % neither)
NEITHER_PROBABILITY = 0.6
#: weight of each hand-written neutral answer in the judge's training (few, but the kind of text that
#: most needs to be told apart from a style)
NEUTRAL_WEIGHT = 3.0

@dataclass(frozen=True)
class Metric:
    """One number :func:`score_replies` returns: its name, range and meaning."""

    name: str
    range: str
    meaning: str
    #: the data formats (style_tune.core.prompts.MODES) it is reported for
    modes: tuple[str, ...] = MODES

    @property
    def help(self) -> str:
        """The report's legend: what it means (range)."""
        return f"{self.meaning} ({self.range})"


#: Every metric, in report order (style_accuracy first): the one definition the report's legend, the
#: OpenCompass summary (eval_configs/eval_style.py) and README's metric table
#: (`python -m style_tune.eval.metric_table`) are generated from.
METRIC_DEFINITIONS: tuple[Metric, ...] = (
    Metric("style_accuracy", "0-100, higher is better",
           "the headline: a sane reply AND the judge reads it as the style asked for (controllable) or "
           "announced on its label line (label mode; no label, no hit); neutral text, noise and repeated "
           "labels score 0"),
    *(Metric(f"style_accuracy_{STYLE_SLUGS[style]}", "0-100, higher is better",
             f"style_accuracy over the replies meant to be {style} (asked for / announced); 0 when there "
             f"are none") for style in STYLES),
    Metric("style_margin", "-100 to 100, higher is better",
           "how clearly a reply is in its style: the judge's probability of the style asked for "
           "(controllable) or announced (label mode) minus that of the likeliest other style, in points, "
           "averaged over all replies; a reply that is not sane, has no label or nothing the judge knows "
           "counts 0"),
    Metric("sane_rate", "0-100",
           f"replies that pass every sanity gate: not empty; not cut off at the token budget; no repeated "
           f"label line; at least {MIN_CONTENT_TOKENS} tokens once label words are removed; "
           f">= {MIN_DISTINCT_2:.0%} distinct token bigrams; >= {MIN_CJK_SHARE:.0%} of the letters CJK; "
           f"not a copy of the user's message (ROUGE-L < {MAX_ECHO_ROUGE:g}); tokens in an order the "
           f"judge's texts know (coherence >= {MIN_COHERENCE:g}: characters in random order fail)"),
    Metric("label_rate", "0-100", f"replies whose first line is a valid style label {'/'.join(STYLES)}",
           ("label",)),
    Metric("label_agreement", "0-100", "of the labelled replies, those that are style hits for their label",
           ("label",)),
    *(Metric(f"judged_{STYLE_SLUGS[style]}", f"0-100; references about {100 // len(STYLES)}",
             f"sane replies the judge reads as {style}, share of all") for style in STYLES),
    Metric("judged_neither", "0-100; references about 0",
           "replies in neither style or not sane, share of all"),
    Metric("judge_accuracy", "0-100",
           "the judge's accuracy on the held-out reference replies, which it never trained on: how far "
           "to trust it"),
    Metric("chrf", "0-100, higher = closer",
           "chrF vs the reference reply, character 1-6-grams, corpus level"),
    Metric("rouge_l", "0-100, higher = closer",
           "ROUGE-L F1 vs the reference reply, Chinese character tokens"),
    Metric("length_mean", "characters", "mean reply length (compare with the references)"),
    Metric("length_p50", "characters", "median reply length"),
    Metric("length_p90", "characters", "90th-percentile reply length"),
    Metric("distinct_1", "0-100, low = repetitive", "unique token unigrams / all unigrams over all replies"),
    Metric("distinct_2", "0-100, low = repetitive", "unique token bigrams / all bigrams over all replies"),
    Metric("empty_rate", "0-100, lower is better", "replies with no text after the label line"),
    Metric("runaway_rate", "0-100, lower is better",
           "replies cut off at the token budget max_out_len, never ended"),
)

#: The metrics :func:`score_replies` returns, per mode, in report order.
METRICS: dict[str, tuple[str, ...]] = {
    mode: tuple(m.name for m in METRIC_DEFINITIONS if mode in m.modes) for mode in MODES
}
#: One line per metric: what it measures and its range (the report's legend).
METRIC_HELP: dict[str, str] = {m.name: m.help for m in METRIC_DEFINITIONS}
#: Metrics that are lengths (characters), not percentages.
LENGTH_METRICS: tuple[str, ...] = tuple(m.name for m in METRIC_DEFINITIONS if m.range == "characters")

# ------------------------------------------------------------------------------------ data rows

_STYLE_BY_SYSTEM = {text: style for style, text in STYLE_SYSTEMS.items()}


def row_mode(system: str | None) -> str:
    """The data format a row's system text belongs to (see style_tune.core.prompts.system_text)."""
    if system in (None, "", QWEN_DEFAULT_SYSTEM):
        return "label"
    if system in _STYLE_BY_SYSTEM:
        return "controllable"
    raise ValueError(f"unknown system text {system!r}: not one that style_tune.core.prompts writes")


def requested_style(system: str | None) -> str | None:
    """The style a controllable-mode system text asks for (None in label mode)."""
    return _STYLE_BY_SYSTEM.get(system or "")


def row_style_reply(turn: dict) -> tuple[str, str]:
    """(style, reply text) of a data row's first turn: the label line in label mode, the system text
    in controllable mode."""
    label, reply = split_label(turn["output"])
    if row_mode(turn.get("system")) == "controllable":
        return _STYLE_BY_SYSTEM[turn["system"]], turn["output"].strip()  # row_mode found it there
    if label is None:
        raise ValueError(f"label-mode row without a style label line: {turn['output'][:40]!r}")
    return label, reply


def load_rows(path: str | Path) -> list[dict]:
    """First turns of an XTuner conversation JSON file (style_tune/data/split.py's format)."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return [row["conversation"][0] for row in rows]


def group_prompts(turns: Iterable[dict], mode: str) -> list[dict]:
    """One sample per distinct prompt (system text + user input), with all its references.

    Label mode: a prompt's rows carry both styles (the model picks one), so both are references.
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


def prompts_in_every_style(path: str | Path, limit: int = 0, seed: int = 0) -> tuple[str, list[dict]]:
    """(mode, samples) of a split file asked as the training's style score asks it: every distinct user
    prompt, in file order (``limit`` > 0: that many, drawn with ``seed``), in every style: controllable
    mode once per style of the styles file with that style's system text, label mode once with the
    label-mode system text (the model announces a style). The mode is the rows' (:func:`row_mode`).
    Each sample as :func:`group_prompts` makes them (system, input, requested_style, references: the
    split's replies to that prompt in that style; none where the split has none)."""
    turns = load_rows(path)
    if not turns:
        raise ValueError(f"{path}: no rows")
    mode = row_mode(turns[0].get("system"))
    known = {(sample["requested_style"], sample["input"]): sample for sample in group_prompts(turns, mode)}
    inputs = list(dict.fromkeys(turn["input"] for turn in turns))
    if 0 < limit < len(inputs):
        inputs = [inputs[i] for i in sorted(random.Random(seed).sample(range(len(inputs)), limit))]
    styles: tuple[str | None, ...] = STYLES if mode == "controllable" else (None,)
    samples = []
    for user in inputs:
        for style in styles:
            references = known.get((style or "", user), {}).get("references", [])
            samples.append({"system": system_text(mode, style), "input": user, "requested_style": style or "",
                            "references": list(references)})
    return mode, samples


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


# ------------------------------------------------------------------------------- sanity gates

_LABEL_WORDS = re.compile("|".join(map(re.escape, STYLES)))


def strip_labels(text: str) -> str:
    """The text with every style label word removed and whitespace runs made one space: a label (or
    the line break a removed label line leaves) is never evidence of a style."""
    return " ".join(_LABEL_WORDS.sub(" ", normalise(text)).split())


def _is_cjk(ch: str) -> bool:
    return "CJK" in unicodedata.name(ch, "")


def cjk_share(text: str) -> float:
    """CJK characters / all letters (CJK and any alphabet); 0 for a text without letters."""
    letters = [ch for ch in text if ch.isalpha()]
    return sum(map(_is_cjk, letters)) / len(letters) if letters else 0.0


def content_tokens(text: str) -> list[str]:
    """:func:`zh_tokens` of the text without label words and without punctuation."""
    return [t for t in zh_tokens(strip_labels(text)) if not unicodedata.category(t[0]).startswith("P")]


def sanity_problems(reply: str, user: str = "", runaway: bool = False) -> list[str]:
    """Why a reply (label mode: the text after its label line) cannot count for style; [] = sane.

    ``empty``, ``runaway`` (cut off at the token budget), ``label_line`` (a line that is a style
    label: the label repeated), ``short``, ``repetitive``, ``script`` (mostly not Chinese),
    ``echo`` (a copy of the user's message). :func:`score_replies` adds ``incoherent`` (tokens in
    no order the judge's texts know: :meth:`StyleJudge.coherence` below MIN_COHERENCE).
    """
    text = normalise(reply)
    if not text:
        return ["empty"]
    problems = ["runaway"] if runaway else []
    if any(line.strip() in STYLES for line in text.splitlines()):
        problems.append("label_line")
    tokens = content_tokens(text)
    if len(tokens) < MIN_CONTENT_TOKENS:
        problems.append("short")
    bigrams = list(zip(tokens, tokens[1:], strict=False))
    if bigrams and len(set(bigrams)) / len(bigrams) < MIN_DISTINCT_2:
        problems.append("repetitive")
    if cjk_share(strip_labels(text)) < MIN_CJK_SHARE:
        problems.append("script")
    if user.strip() and rouge_l(strip_labels(text), [user]) >= MAX_ECHO_ROUGE:
        problems.append("echo")
    return problems


# ------------------------------------------------------------------------------- the style judge

def neutral_replies(path: str | Path = NEUTRAL_REPLIES) -> list[str]:
    """The hand-written neutral answers (style_data/neutral_replies.txt)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def shuffled(texts: Iterable[str], seed: int) -> list[str]:
    """Each text with its tokens in random order: the same characters, no phrases (noise)."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        tokens = zh_tokens(text)
        rng.shuffle(tokens)
        out.append("".join(tokens))
    return out


class StyleJudge:
    """Which style a reply is in, or neither: TF-IDF character 1-3-grams + logistic regression.

    Three classes: the styles, trained on reply texts, and :data:`NEITHER`, trained on neutral text
    (plain answers, user messages, token-shuffled replies). Every text the judge sees, in training
    and in use, has its style label words removed (:func:`strip_labels`), so a label never counts as
    evidence, even if a label line is left in the training texts. The verdict is NEITHER when that
    class has probability >= ``neither_probability``, else the likelier style. A text with no
    character n-gram the judge has seen gets no verdict (None).
    """

    def __init__(self, texts: Sequence[str], styles: Sequence[str], neither: Sequence[str],
                 neither_weights: Sequence[float] | None = None, seed: int = 0,
                 neither_probability: float = NEITHER_PROBABILITY,
                 language: Sequence[str] | None = None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if sorted(set(styles)) != sorted(STYLES):
            raise ValueError(f"the judge needs training replies of every style {STYLES}; got {set(styles)}")
        if not neither:
            raise ValueError("the judge needs neutral texts for its 'neither' class")
        weights = [1.0] * len(texts) + list(neither_weights or [1.0] * len(neither))
        self.neither_probability = neither_probability
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True,
                                          preprocessor=strip_labels)
        self.classifier = LogisticRegression(C=10.0, max_iter=3000, random_state=seed,
                                             class_weight="balanced", solver="newton-cg")
        labels = [*styles, *([NEITHER] * len(neither))]
        self.classifier.fit(self.vectorizer.fit_transform([*texts, *neither]), labels, sample_weight=weights)
        self.unigrams: Counter[str] = Counter()
        self.bigrams: Counter[tuple[str, str]] = Counter()
        for text in [*texts, *(language or ())]:
            tokens = zh_tokens(strip_labels(text))
            self.unigrams.update(tokens)
            self.bigrams.update(zip(tokens, tokens[1:], strict=False))
        self._total = sum(self.unigrams.values()) + len(self.unigrams) + 1

    @classmethod
    def from_split(cls, path: str | Path, seed: int = 0, neutral: str | Path | Sequence[str] = NEUTRAL_REPLIES
                   ) -> StyleJudge:
        """Trained on a split file (either mode): its replies, and for "neither" the neutral answers
        (a file, or the texts), its user messages and its replies shuffled."""
        turns = load_rows(path)
        pairs = [row_style_reply(turn) for turn in turns]
        replies = [reply for _, reply in pairs]
        users = list(dict.fromkeys(turn["input"] for turn in turns))
        plain = neutral_replies(neutral) if isinstance(neutral, str | Path) else list(neutral)
        neither = [*plain, *users, *shuffled(replies, seed)]
        weights = [NEUTRAL_WEIGHT] * len(plain) + [1.0] * (len(neither) - len(plain))
        return cls(replies, [style for style, _ in pairs], neither, weights, seed=seed,
                   language=[*plain, *users])

    def coherence(self, text: str, weight: float = 0.7) -> float:
        """How much better the judge's texts predict each token from the one before than from nothing:
        the mean log ratio of an interpolated bigram probability to the unigram one (add-one smoothed).
        Real sentences gain (held-out references: mean 0.96), characters in random order lose (an
        unseen pair costs log(1 - weight)); 0 for a text of fewer than two tokens."""
        tokens = zh_tokens(strip_labels(text))
        gains = []
        for a, b in zip(tokens, tokens[1:], strict=False):
            unigram = (self.unigrams[b] + 1) / self._total
            bigram = self.bigrams[(a, b)] / self.unigrams[a] if self.unigrams[a] else 0.0
            gains.append(math.log((weight * bigram + (1 - weight) * unigram) / unigram))
        return statistics.fmean(gains) if gains else 0.0

    def predict(self, texts: Sequence[str]) -> list[str | None]:
        """The style of each text, :data:`NEITHER`, or None where there is nothing to judge."""
        if not texts:
            return []
        features = self.vectorizer.transform(list(texts))
        probabilities = self.classifier.predict_proba(features)
        classes = [str(c) for c in self.classifier.classes_]
        neither = classes.index(NEITHER)
        styles = [i for i in range(len(classes)) if i != neither]
        known = features.getnnz(axis=1) > 0
        verdicts: list[str | None] = []
        for row, ok in zip(probabilities, known, strict=True):
            if not ok:
                verdicts.append(None)
            elif row[neither] >= self.neither_probability:
                verdicts.append(NEITHER)
            else:
                verdicts.append(classes[max(styles, key=lambda i: row[i])])
        return verdicts

    def margins(self, texts: Sequence[str], targets: Sequence[str | None]) -> list[float]:
        """Per text, in points: the probability of its target style minus that of the likeliest other
        style (-100..100); 0 where there is no target style or nothing the judge knows."""
        if not texts:
            return []
        features = self.vectorizer.transform(list(texts))
        probabilities = self.classifier.predict_proba(features)
        classes = [str(c) for c in self.classifier.classes_]
        known = features.getnnz(axis=1) > 0
        margins = []
        for row, ok, target in zip(probabilities, known, targets, strict=True):
            if not ok or target not in STYLES:
                margins.append(0.0)
                continue
            other = max(row[classes.index(style)] for style in STYLES if style != target)
            margins.append(100.0 * (row[classes.index(target)] - other))
        return margins

    def accuracy(self, texts: Sequence[str], styles: Sequence[str]) -> float:
        """Accuracy (0-100) on texts of known style (or NEITHER)."""
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
    users: Sequence[str] | None = None,
    runaway: Sequence[bool] | None = None,
) -> dict:
    """All metrics (see the module docstring) for generated replies, with per-reply details.

    ``references[i]``: the reference outputs of prompt i, as in the data (label line first in label
    mode; may be empty: then the content scores leave that reply out, and are omitted when no reply
    has references); ``requested[i]``: the style prompt i asks for (controllable mode; None in label
    mode); ``users[i]``: the user's message (the echo gate); ``token_counts[i]`` with ``max_out_len``,
    or ``runaway[i]`` directly: whether reply i was cut off at the token budget (without either,
    runaway_rate is omitted and that gate is off).
    """
    if mode not in METRICS:
        raise ValueError(f"unknown mode {mode!r}")
    n = len(predictions)
    users = list(users) if users is not None else [""] * n
    if not (len(references) == len(requested) == len(users) == n):
        raise ValueError("predictions, references, requested styles and user messages differ in length")
    if runaway is None and token_counts is not None and max_out_len:
        runaway = [count >= max_out_len for count in token_counts]
    if runaway is not None and len(runaway) != n:
        raise ValueError("predictions and runaway flags differ in length")
    cut_off = list(runaway) if runaway is not None else [False] * n

    if mode == "label":
        labels, replies = zip(*(split_label(p or "") for p in predictions), strict=True) if n else ((), ())
        targets = list(labels)
    else:
        labels, replies = (None,) * n, tuple(normalise(p or "") for p in predictions)
        targets = list(requested)
    problems = [sanity_problems(reply, user, cut) for reply, user, cut in zip(replies, users, cut_off,
                                                                              strict=True)]
    for reply, found in zip(replies, problems, strict=True):
        if "empty" not in found and judge.coherence(reply) < MIN_COHERENCE:
            found.append("incoherent")
    sane = [not p for p in problems]
    judged = [j if ok else NEITHER for j, ok in zip(judge.predict(list(replies)), sane, strict=True)]
    hits = [t is not None and j == t for j, t in zip(judged, targets, strict=True)]
    margins = [m if ok else 0.0 for m, ok in zip(judge.margins(list(replies), targets), sane, strict=True)]

    # the judge's accuracy on the references (held out): their style is the label or the requested one
    flat_refs = []
    for refs, style in zip(references, requested, strict=True):
        for ref in refs:
            label, text = split_label(ref)
            flat_refs.append((label if mode == "label" else style, text if mode == "label" else ref.strip()))
    ref_replies = [[split_label(r)[1] if mode == "label" else r.strip() for r in refs] for refs in references]
    with_refs = [i for i in range(n) if ref_replies[i]]
    corpus_chrf, sentence_chrf = chrf([replies[i] for i in with_refs], [ref_replies[i] for i in with_refs])
    chrf_of = dict(zip(with_refs, sentence_chrf, strict=True))
    rouge_of = {i: rouge_l(replies[i], ref_replies[i]) for i in with_refs}
    lengths = [char_length(reply) for reply in replies]
    empty = [length == 0 for length in lengths]

    result: dict = {"style_accuracy": _pct(sum(hits), n)}
    for style in STYLES:
        metric = f"style_accuracy_{STYLE_SLUGS[style]}"
        meant = [i for i, t in enumerate(targets) if t == style]
        result[metric] = _pct(sum(hits[i] for i in meant), len(meant))
    result["style_margin"] = statistics.fmean(margins) if n else 0.0
    result["sane_rate"] = _pct(sum(sane), n)
    if mode == "label":
        labelled = [i for i, label in enumerate(labels) if label is not None]
        result["label_rate"] = _pct(len(labelled), n)
        result["label_agreement"] = _pct(sum(hits[i] for i in labelled), len(labelled))
    judged_names = (*(f"judged_{STYLE_SLUGS[s]}" for s in STYLES), "judged_neither")
    for style, metric in zip((*STYLES, NEITHER), judged_names, strict=True):
        result[metric] = _pct(sum(j == style or (style == NEITHER and j is None) for j in judged), n)
    known = [(s, r) for s, r in flat_refs if s is not None]  # accuracy: on references of a known style
    if known:
        result["judge_accuracy"] = judge.accuracy([r for _, r in known], [s for s, _ in known])
    if with_refs:
        result["chrf"] = corpus_chrf
        result["rouge_l"] = statistics.fmean(rouge_of.values())
    result["length_mean"] = statistics.fmean(lengths) if lengths else 0.0
    result["length_p50"] = percentile(lengths, 50)
    result["length_p90"] = percentile(lengths, 90)
    result["distinct_1"] = distinct_n(replies, 1)
    result["distinct_2"] = distinct_n(replies, 2)
    result["empty_rate"] = _pct(sum(empty), n)
    if runaway is not None:
        result["runaway_rate"] = _pct(sum(cut_off), n)
    result["details"] = [
        {
            "prediction": predictions[i], "label": labels[i], "reply": replies[i],
            "requested": requested[i], "judged": judged[i], "sane": sane[i], "problems": problems[i],
            "style_hit": hits[i], "style_margin": margins[i], "chrf": chrf_of.get(i),
            "rouge_l": rouge_of.get(i),
            "length": lengths[i], "empty": empty[i],
            **({"runaway": cut_off[i]} if runaway is not None else {}),
            **({"tokens": token_counts[i]} if token_counts is not None else {}),
        }
        for i in range(n)
    ]
    return result
