"""The CPU server's engine: concurrent requests batched into one transformers ``generate`` call.

    batcher = Batcher(model, tokenizer, max_batch=8, max_waiting=32, timeout_s=300)
    job = Job(prompt_ids, max_tokens=64, sampling=batcher.sampling(temperature=0), deliver=callback)
    batcher.submit(job)          # Busy when max_batch + max_waiting jobs are in already

One thread owns the model. It takes the oldest waiting job and up to ``max_batch - 1`` more with the
same sampling settings, left-pads their prompts into one batch and runs ``model.generate`` on it: one
forward pass per token for the whole batch, which on a CPU costs little more than for one row (measured:
benchmarks/serve_bench_cpu.md). This is static batching, as ``generate`` does it: jobs that arrive while
a batch runs wait for the next one; a long job delays them, at most by its max_tokens or its timeout.

Per-job settings the batch cannot share are kept per row by transformers' own hooks: a
``StoppingCriteria`` ends a row at its own max_tokens, when its client is gone (``Job.cancel``) or when its
deadline passed, and a streamer hands each row's new tokens to that row's job as text. Jobs with different
temperature / top_p never share a batch; a sampled job with a seed runs alone (the seed sets torch's
generator for that call: its reply is the one it would be on an idle server). Everything else (the
model's generation_config: top_k, repetition_penalty, eos ids) is the model's own, as in
``transformers serve``.

Deliveries, from the engine's thread: ``("text", str)`` pieces of the reply, then one of ``("end",
finish_reason, completion_tokens)`` with reason "stop" (an EOS token) or "length" (max_tokens), or
``("error", kind, message)`` with kind "timeout" or "engine". A cancelled job gets nothing more.
"""

from __future__ import annotations

import collections
import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the engine starts (the dev env, which checks the types, has neither)
    from torch import BoolTensor, FloatTensor, LongTensor, Tensor
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: How long the engine waits, after a job arrives, for another one sent at about the same moment (8
#: clients started together arrive within a few ms of each other): it starts a batch when the batch is
#: full or no job came for this long, so 8 such clients get a batch of 8, not one of 1 and then one of 7.
GATHER_S = 0.02


class Busy(Exception):
    """The engine holds as many jobs as it may: try again after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"busy: retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Sampling:
    """The settings a batch shares: greedy (``temperature`` 0) or sampled; ``seed`` only when sampled."""

    do_sample: bool
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass(eq=False)
class Job:
    prompt_ids: list[int]
    max_tokens: int
    sampling: Sampling
    deliver: Callable[[tuple], object]  # what it returns is not used
    deadline: float = math.inf  # time.monotonic() after which the job ends with a "timeout" error
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded reply delivered so far
    done: bool = False
    cancelled: bool = False

    def cancel(self) -> None:
        """The client is gone: the row stops at the next token, and nothing more is delivered."""
        self.cancelled = True


class Batcher:
    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, max_batch: int = 8,
                 max_waiting: int = 32, timeout_s: float = 300.0, gather_s: float = GATHER_S):
        import torch

        self.torch, self.model, self.tokenizer = torch, model, tokenizer
        self.max_batch, self.max_waiting, self.timeout_s, self.gather_s = (max_batch, max_waiting, timeout_s,
                                                                           gather_s)
        config = model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self.lock = threading.Condition()
        self.batch_s = 1.0  # how long a batch took lately: the Retry-After a busy answer suggests
        self.counts = collections.Counter[str]()  # batches, rows, cancelled, timed_out, refused
        self.thread = threading.Thread(target=self._loop, name="style-tune-batcher", daemon=True)

    def start(self) -> Batcher:
        self.thread.start()
        return self

    def sampling(self, temperature: float | None = None, top_p: float | None = None,
                 seed: int | None = None) -> Sampling:
        """A request's settings resolved against the model's generation_config (what it leaves out)."""
        config = self.model.generation_config
        if temperature is None:
            temperature = config.temperature if config.do_sample else 0.0
        if temperature == 0:
            return Sampling(do_sample=False)
        return Sampling(True, float(temperature), float(top_p if top_p is not None else config.top_p or 1.0),
                        seed)

    def submit(self, job: Job) -> None:
        with self.lock:
            if len(self.waiting) + len(self.running) >= self.max_batch + self.max_waiting:
                self.counts["refused"] += 1
                raise Busy(max(1, math.ceil(self.batch_s)))
            if job.deadline == math.inf:
                job.deadline = time.monotonic() + self.timeout_s
            self.waiting.append(job)
            self.lock.notify()

    def load(self) -> dict[str, int]:
        with self.lock:
            return {"running": len(self.running), "waiting": len(self.waiting), **self.counts}

    # --- the engine's thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self.waiting:
                    self.lock.wait()
                seen = 0
                while seen < len(self.waiting) < self.max_batch:  # more came in the last gather_s
                    seen = len(self.waiting)
                    self.lock.wait(self.gather_s)
                batch = self._take()
                self.running = batch
            if batch:
                start = time.monotonic()
                self._run(batch)
                self.batch_s = time.monotonic() - start
            with self.lock:
                self.running = []

    def _take(self) -> list[Job]:
        """The oldest live job and the next ones that may share its batch (same settings; a seed: alone)."""
        now = time.monotonic()
        for job in [j for j in self.waiting if j.cancelled or now > j.deadline]:
            self.waiting.remove(job)
            self._end_early(job, now)
        if not self.waiting:
            return []
        first = self.waiting[0]
        if first.sampling.seed is not None:
            return [self.waiting.popleft()]
        batch = [j for j in self.waiting if j.sampling == first.sampling][:self.max_batch]
        for job in batch:
            self.waiting.remove(job)
        return batch

    def _end_early(self, job: Job, now: float) -> None:
        job.done = True
        if job.cancelled:
            self.counts["cancelled"] += 1
        else:
            self.counts["timed_out"] += 1
            job.deliver(("error", "timeout", f"the request took longer than the server's timeout "
                                             f"({self.timeout_s:g} s)"))

    def _run(self, batch: list[Job]) -> None:
        torch = self.torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        engine = self

        class Rows(BaseStreamer, StoppingCriteria):
            """Each row's new token to its job; a row is finished when its job is."""

            prompt_seen = False

            def put(self, value: Tensor) -> None:
                if not self.prompt_seen:  # generate's first call is the prompt
                    self.prompt_seen = True
                    return
                now = time.monotonic()
                for job, token in zip(batch, value.reshape(-1).tolist(), strict=True):
                    if not job.done:
                        engine._step(job, token, now)

            def end(self) -> None:
                pass

            def __call__(self, input_ids: LongTensor, scores: FloatTensor, **kwargs: Any) -> BoolTensor:
                now = time.monotonic()
                for job in batch:
                    if not job.done and (job.cancelled or now > job.deadline):
                        engine._end_early(job, now)
                return torch.tensor([job.done for job in batch], dtype=torch.bool)

        width = max(len(job.prompt_ids) for job in batch)
        input_ids = torch.tensor([[self.pad_id] * (width - len(j.prompt_ids)) + j.prompt_ids for j in batch])
        mask = torch.tensor([[0] * (width - len(j.prompt_ids)) + [1] * len(j.prompt_ids) for j in batch])
        sampling = batch[0].sampling
        config = copy.deepcopy(self.model.generation_config)
        config.update(max_new_tokens=max(job.max_tokens for job in batch), do_sample=sampling.do_sample,
                      temperature=sampling.temperature, top_p=sampling.top_p, pad_token_id=self.pad_id)
        if not sampling.do_sample:
            config.update(top_k=None)
        rows = Rows()
        self.counts["batches"] += 1
        self.counts["rows"] += len(batch)
        try:
            with torch.inference_mode():
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                    streamer=rows, stopping_criteria=StoppingCriteriaList([rows]))
        except Exception as err:  # the engine failed: every unfinished row gets the error
            for job in batch:
                if not job.done:
                    job.done = True
                    job.deliver(("error", "engine", f"generation failed: {type(err).__name__}: {err}"))
            return
        for job in batch:  # generate stopped at max_new_tokens before a row saw its own end
            if not job.done:
                self._finish(job, "length")

    def _step(self, job: Job, token: int, now: float) -> None:
        if job.cancelled or now > job.deadline:
            self._end_early(job, now)
        elif token in self.eos_ids:
            self._finish(job, "stop")
        else:
            job.tokens.append(token)
            text = self.tokenizer.decode(job.tokens, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # a character split across tokens: wait for its other bytes
                self._send(job, text)
            if len(job.tokens) >= job.max_tokens:
                self._finish(job, "length")

    def _send(self, job: Job, text: str) -> None:
        if len(text) > job.sent:
            job.deliver(("text", text[job.sent:]))
            job.sent = len(text)

    def _finish(self, job: Job, reason: str) -> None:
        job.done = True
        self._send(job, self.tokenizer.decode(job.tokens, skip_special_tokens=True))
        job.deliver(("end", reason, len(job.tokens)))
