"""Build the demo's stand-in base model: a small Qwen2 that has read the training text, on a CPU.

    python -m style_tune.train.demo_base OUT_DIR --data data/label/train.json [--steps 1000] [--seed 0]
        [--force]

`make demo` fine-tunes this model with the real XTuner config (LoRA, xtuner_configs/*_cpu.py). A
random-weight model (`make tiny-model`) can only learn the reply *format* in a CPU budget: its
loss sits near a uniform guess over 151,936 tokens, and most of each step goes into those logits.
This tool spends the compute where it teaches:

- Vocabulary: the real Qwen2.5 byte-level BPE (style_tune/train/tiny_model.py), cut down to the tokens
  the data uses. Kept: the 256 byte tokens (any text still encodes), every token that the full
  tokenizer produces on the training rows (prompt, system texts, reply, label) and on the system
  texts of both modes, every token those are merged from, and Qwen2.5's 22 added tokens (same
  strings, new ids). On the training rows the cut tokenizer gives exactly the full one's tokens
  (checked here); elsewhere it may split words into smaller pieces. About 5 k tokens instead of
  151,665, so a logit costs ~30x less.
- Pretraining: ``--steps`` steps (a fixed number, so the result is the same on every machine) of
  next-token prediction on the training split's *unlabelled* text: each training prompt with ONE of
  its two replies (drawn once with ``--seed``; about half gentle, half snarky), as ChatML exchanges
  with no system message and no style label. The model learns the language of both styles, but not
  which style goes with which system text or label: that is what the LoRA fine-tune has to learn,
  and what the evaluation measures (the base's choice of style does not follow the request). The
  other reply of each prompt is new to it, so the fine-tune must write it from the style asked for
  rather than recall it. Measured (robust style score of the tuned model, controllable mode, same
  fine-tune, single exchanges): both replies of every prompt 72 (the base recites them: the LoRA
  only learns to pick the first token, and on new prompts the reply drifts between styles), one
  reply 80; one reply with the prompt and the other reply as a document of its own 70 (the more of
  the fine-tune's targets the base already knows, the less the fine-tune learns the style). Replies
  and prompts as separate documents gave replies too repetitive to pass the sanity gates.
- Conversations in one voice: the exchanges come in conversations of CONVERSATION_TURNS, all
  replies of a conversation in one style, regrouped every round (a round reads each exchange once).
  A real base has read many texts that keep one voice; from these the stand-in learns that the style
  of the replies so far predicts the style of the next one: a style it carries through a context.
  The fine-tune then only has to make the system text set that style, not rewrite each reply. No
  conversation has a system text or label, and the first reply of each follows nothing, so the base
  still has no way to read the request. Measured (tuned 温柔 / 毒舌, controllable mode, 1000 steps,
  pretraining seeds 0 / 1 / 2): single exchanges 91.3 / 78.3, 95.7 / 84.8, 93.5 / 69.6; conversations of 4:
  93.5 / 87.0, 100 / 87.0, 95.7 / 89.1; of 8: 97.8 / 100, 97.8 / 97.8, 97.8 / 91.3 (an experiment script
  that drew one round more; this code's seed 0, scored by `make eval-demo`: 95.7 / 97.8).
- What a pretrained model knows about the styles: each style's description from style_data/styles.json
  (its controllable-mode system text and `make gen-data`'s prompt), as plain documents, not chat
  exchanges. A real base knows the words 温柔 and 毒舌; the replies almost never contain them (毒舌:
  0 of 368). The embeddings are tied, and LoRA does not train them, so a token the base never read
  stays one the tuned model cannot write: without these documents the label-format demo wrote the
  label 温柔 for every prompt (first-token probability of 毒舌 0.003, of 温柔 0.46), with them it
  writes both. They teach no mapping from a system text or label to a reply style.

The output has the files a Qwen2.5 model directory has and loads by path in every step. It is
written to a temporary directory and renamed when complete; an existing OUT_DIR is kept unless
--force is given (a cached stand-in, like `make tiny-model`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from style_tune.core import defaults
from style_tune.core.io import atomic_dir, sweep_temporaries
from style_tune.core.prompts import (
    IM_END,
    QWEN_DEFAULT_SYSTEM,
    STYLES,
    chatml_block,
    split_label,
)
from style_tune.core.steps import main_of
from style_tune.core.styles import load_styles
from style_tune.train.tiny_model import ADDED_TOKENS, SPEC_DIR, build_tokenizer

if TYPE_CHECKING:  # imported when used (the dev env, which checks the types, has no transformers)
    from transformers import Qwen2ForCausalLM, Qwen2TokenizerFast

STEP = "build_demo_base"

#: The stand-in's shapes: wider and deeper than `make tiny-model`'s (its vocabulary is ~40x smaller).
#: 5 layers: measured (tuned style score gentle/snarky, controllable mode, pretraining seed 0) 3 layers
#: 91/70, 5 layers 91/78; hidden 192 x 4 layers 100/74 at twice the time per step.
DEMO_SHAPES = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=5,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_window_layers=5,
    initializer_range=0.02,
    max_position_embeddings=1024,
    sliding_window=1024,
)

#: Exchanges in a pretraining conversation, all in one style (see the module docstring for what 1, 4
#: and 8 gave); conversations in a pretraining batch: 2 x 8, the 16 exchanges a step of the
#: single-exchange stand-in read, so a step costs about the same.
CONVERSATION_TURNS = 8
BATCH_CONVERSATIONS = 2


def training_rows(path: Path) -> list[dict]:
    """First turns of the split's conversations (style_tune/data/split.py's format)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [row["conversation"][0] for row in rows]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise SystemExit(f"{STEP}: {path} is not a split file of style_tune/data/split.py ({err}); "
                         "run `make split`") from None


def style_descriptions() -> list[str]:
    """Each style's description in the styles file: the system texts, then gen-data's prompts (plain text)."""
    styles = list(load_styles())
    return [style.system for style in styles] + [style.prompt for style in styles]


def vocabulary_texts(turns: list[dict]) -> list[str]:
    """Every text the demo trains or prompts on: the rows as ChatML, Qwen's default system text, the labels
    and the style descriptions (which hold controllable mode's system texts)."""
    texts = [chatml_block("system", t.get("system") or "") + chatml_block("user", t["input"])
             + chatml_block("assistant", t["output"]) for t in turns]
    texts += [QWEN_DEFAULT_SYSTEM, *STYLES, *(f"{s}\n" for s in STYLES), *style_descriptions()]
    return texts


def chosen_exchanges(turns: list[dict], rng: random.Random) -> dict[str, list[str]]:
    """Each user message once, with one of its replies (label line removed, drawn with ``rng``) as a
    ChatML exchange with no system message, grouped by the reply's style (its label line)."""
    replies: dict[str, dict[str, str]] = {}
    for number, turn in enumerate(turns, 1):
        label, reply = split_label(turn["output"])
        if label is None:
            raise SystemExit(f"{STEP}: training row {number} ({turn['input'][:30]!r}) has no style label "
                             "line: the stand-in reads the label-format split (make split MODE=label)")
        replies.setdefault(turn["input"], {})[reply] = label
    by_style: dict[str, list[str]] = {style: [] for style in STYLES}
    for user, styles in replies.items():
        reply = rng.choice(sorted(styles))
        by_style[styles[reply]].append(chatml_block("user", user) + chatml_block("assistant", reply))
    return by_style


def pretraining_texts(turns: list[dict], seed: int = 0, min_conversations: int = 0) -> list[str]:
    """The unlabelled text: the chosen exchanges (:func:`chosen_exchanges`) of each style, shuffled and
    cut into conversations of CONVERSATION_TURNS exchanges, drawn anew each round until there are
    ``min_conversations`` (one round at least); then the style descriptions as plain documents, once a
    round."""
    rng = random.Random(seed)
    by_style = chosen_exchanges(turns, rng)
    conversations: list[str] = []
    rounds = 0
    while rounds == 0 or len(conversations) < min_conversations:
        for exchanges in by_style.values():
            exchanges = exchanges[:]
            rng.shuffle(exchanges)
            conversations += ["".join(exchanges[i:i + CONVERSATION_TURNS])
                              for i in range(0, len(exchanges), CONVERSATION_TURNS)]
        rounds += 1
    return conversations + style_descriptions() * rounds


def cut_tokenizer(full: Qwen2TokenizerFast, texts: list[str]) -> Qwen2TokenizerFast:
    """The full Qwen tokenizer reduced to the tokens ``texts`` need (see the module docstring)."""
    from tokenizers import Tokenizer
    from transformers import Qwen2TokenizerFast

    spec = json.loads(full.backend_tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]]
    made_from: dict[str, list[tuple[str, str]]] = {}
    for a, b in merges:
        made_from.setdefault(a + b, []).append((a, b))
    by_id = {i: tok for tok, i in vocab.items()}
    keep = {tok for tok in vocab if len(tok) == 1}  # the 256 byte-level symbols
    todo = [by_id[i] for text in texts for i in full(text, add_special_tokens=False)["input_ids"]
            if i in by_id]
    while todo:
        tok = todo.pop()
        if tok in keep:
            continue
        keep.add(tok)
        for a, b in made_from.get(tok, []):
            todo += [a, b]
    ordered = sorted(keep, key=vocab.__getitem__)  # keep the BPE rank order
    spec["model"]["vocab"] = {tok: i for i, tok in enumerate(ordered)}
    spec["model"]["merges"] = [[a, b] for a, b in merges if a in keep and b in keep and a + b in keep]
    for offset, added in enumerate(spec["added_tokens"]):
        added["id"] = len(ordered) + offset
    assert [a["content"] for a in spec["added_tokens"]] == [c for c, _ in ADDED_TOKENS]
    backend = Tokenizer.from_str(json.dumps(spec))
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend, eos_token=full.eos_token, pad_token=full.pad_token, unk_token=None,
        bos_token=None, additional_special_tokens=full.additional_special_tokens,
        model_max_length=full.model_max_length, errors="replace",
        clean_up_tokenization_spaces=False, split_special_tokens=False,
    )
    tokenizer.chat_template = full.chat_template
    # the same tokens as the full tokenizer, id for id through the new numbering
    new_id = {vocab[tok]: i for i, tok in enumerate(ordered)}
    new_id.update({a["content"]: a["id"] for a in spec["added_tokens"]})
    for text in texts:
        old = [new_id.get(i, new_id.get(full.convert_ids_to_tokens(i)))
               for i in full(text, add_special_tokens=False)["input_ids"]]
        if old != tokenizer(text, add_special_tokens=False)["input_ids"]:
            raise SystemExit(f"{STEP}: the cut tokenizer splits {text[:60]!r} differently (a bug here)")
    return tokenizer


def build_model(tokenizer: Qwen2TokenizerFast, seed: int) -> Qwen2ForCausalLM:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    values = json.loads((SPEC_DIR / "config.json").read_text(encoding="utf-8"))
    vocab_size = 64 * math.ceil(len(tokenizer) / 64)
    values.update(DEMO_SHAPES, torch_dtype="float32", vocab_size=vocab_size,
                  bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                  eos_token_id=tokenizer.convert_tokens_to_ids(IM_END))
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**values))
    generation = GenerationConfig.from_pretrained(SPEC_DIR).to_dict()
    generation.update(bos_token_id=values["bos_token_id"], pad_token_id=values["bos_token_id"],
                      eos_token_id=[values["eos_token_id"], values["bos_token_id"]])
    model.generation_config = GenerationConfig(**generation)
    return model


def pretrain(model: Qwen2ForCausalLM, tokenizer: Qwen2TokenizerFast, texts: list[str], steps: int, seed: int,
             batch_size: int = BATCH_CONVERSATIONS, lr: float = 3e-3) -> list[float]:
    """``steps`` steps of next-token prediction on ``texts`` (all tokens, padding masked), shuffled
    epochs; AdamW, 20 warm-up steps, cosine decay to 5 % of ``lr``."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    pad = tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    def factor(s: int) -> float:
        return min(1.0, (s + 1) / 20) * max(0.05, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1))))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train()
    losses: list[float] = []
    start, step = time.monotonic(), 0
    while step < steps:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for first in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[first:first + batch_size]]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            step += 1
            if step % 50 == 0 or step == 1:
                elapsed = time.monotonic() - start
                print(f"{STEP}: step {step} of {steps}, loss {loss.item():.3f}, "
                      f"{elapsed:.0f} s", flush=True)
            if step >= steps:
                break
    model.eval()
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the training split (make split)")
    parser.add_argument("--steps", type=int, default=defaults.DEMO_BASE_STEPS,
                        help="pretraining steps (batches of 2 conversations of 8 exchanges)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)

    if args.out_dir.exists() and not args.force:
        sweep_temporaries(args.out_dir, STEP)
        print(f"{STEP}: {args.out_dir} exists; nothing to do (use --force to rebuild).")
        return 0
    turns = training_rows(args.data)
    full = build_tokenizer()
    tokenizer = cut_tokenizer(full, vocabulary_texts(turns))
    model = build_model(tokenizer, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    texts = pretraining_texts(turns, args.seed, min_conversations=args.steps * BATCH_CONVERSATIONS)
    print(f"{STEP}: vocabulary {len(tokenizer)} of {len(full)} tokens; {n_params / 1e6:.1f} M parameters; "
          f"pretraining {args.steps} steps on {len(texts)} unlabelled texts of {args.data}", flush=True)
    losses = pretrain(model, tokenizer, texts, args.steps, args.seed)
    with atomic_dir(args.out_dir, force=True, step=STEP) as tmp:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "pretraining.json").write_text(json.dumps({
            "data": str(args.data), "steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
            "vocabulary": len(tokenizer), "parameters": n_params, "seed": args.seed,
        }, indent=1), encoding="utf-8")
    print(f"{STEP}: wrote {args.out_dir} (pretraining loss {losses[0]:.2f} -> {losses[-1]:.2f}, "
          f"{len(losses)} steps)")
    return 0


if __name__ == "__main__":
    main_of(STEP, main)
