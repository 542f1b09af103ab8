"""gen-data's client: the API checked, every request asked, each answer journalled as it arrives.

The official ``openai`` client (async) sends the requests, at most --concurrency at a time; its own
retry loop retries 408/409/429/5xx replies, timeouts and dropped connections --max-retries times with
exponential backoff, honouring ``Retry-After``. 401/403/404 stop the run (a wrong key, URL or model
fails every row alike); a request that still fails is counted with why, and asked again by the next run.

Not the judges' call loop (style_tune/eval/llm_judge.py ``ask_judge``: greedy calls on threads, the
answers returned in order): here every answer is journalled the moment it arrives, each request carries
its own sampling settings and seed, the retries and tokens are counted, and Ctrl-C cancels the asking
at once (an async task; a thread in a call cannot be stopped).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from style_tune.data.gen import STEP
from style_tune.data.gen.journal import Journal, Request

#: Statuses that no retry can fix and that every other request would meet too: stop the run.
FATAL_STATUSES = {401: "the API refused the key (set OPENAI_API_KEY)",
                  403: "the API refused access (OPENAI_API_KEY's permissions)",
                  404: "not found (check API_BASE, which ends in /v1, and GEN_MODEL)"}


class FatalAPIError(Exception):
    """The API cannot be used at all (unreachable, key refused, model unknown)."""


@dataclass
class Tally:
    """What this run's requests did."""

    answered: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # key -> why
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def make_client(api_base: str, timeout: float, max_retries: int):
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=api_base, api_key=os.environ.get("OPENAI_API_KEY") or "none",
                       timeout=timeout, max_retries=max_retries)


async def pick_model(client, model: str | None) -> str:
    """Check that the API answers; the model to ask: ``model``, or the one the server lists."""
    import openai

    try:
        listed = [entry.id async for entry in client.models.list()]
    except openai.APIStatusError as err:
        if err.status_code in (401, 403):
            raise FatalAPIError(f"GET {client.base_url}models: HTTP {err.status_code}: "
                                f"{FATAL_STATUSES[err.status_code]}") from None
        listed = []  # some APIs do not list models; the first request will tell
    except openai.APIConnectionError as err:
        raise FatalAPIError(f"cannot reach {client.base_url} ({err.__cause__ or err}); is the server up "
                            "(make serve, lmdeploy serve api_server) and API_BASE right?") from None
    if model:
        if listed and model not in listed:
            print(f"{STEP}: note: {client.base_url}models does not list {model!r} (it lists "
                  f"{', '.join(listed[:10])}); asking anyway", file=sys.stderr)
        return model
    if len(listed) == 1:
        return listed[0]
    raise FatalAPIError(f"GEN_MODEL= is needed: {client.base_url}models lists "
                        f"{', '.join(listed[:20]) if listed else 'no models'}")


def _failure(err: Exception, timeout: float, max_retries: int) -> str:
    import openai

    attempts = f"{max_retries + 1} attempt(s)"
    if isinstance(err, openai.APITimeoutError):
        return f"timed out after {timeout:g} s, {attempts}"
    if isinstance(err, openai.APIConnectionError):
        return f"connection failed ({type(err.__cause__ or err).__name__}), {attempts}"
    if isinstance(err, openai.APIStatusError):
        message = " ".join(str(getattr(err, "message", err)).split())[:160]
        retried = err.status_code in (408, 409, 429) or err.status_code >= 500  # what the client retries
        return f"HTTP {err.status_code}: {message}" + (f", {attempts}" if retried else "")
    return f"bad answer: {err}"


async def ask_all(requests: Sequence[Request], client, journal: Journal, *, concurrency: int,
                  timeout: float, max_retries: int, progress: bool = True) -> Tally:
    """Ask each request (at most ``concurrency`` at a time), journalling every answer as it arrives."""
    import openai
    from tqdm import tqdm

    tally = Tally()
    queue = list(reversed(requests))
    bar = tqdm(total=len(requests), desc=STEP, unit="row", file=sys.stderr, mininterval=1.0,
               smoothing=0.1, disable=not progress or not requests)

    async def ask(request: Request) -> None:
        try:
            raw = await client.chat.completions.with_raw_response.create(**request.body)
            completion = raw.parse()
            choice = completion.choices[0]
            reply = choice.message.content
            if not isinstance(reply, str):
                raise ValueError("the reply has no text content")
        except openai.APIStatusError as err:
            if err.status_code in FATAL_STATUSES:
                raise FatalAPIError(f"HTTP {err.status_code} from {client.base_url}: "
                                    f"{FATAL_STATUSES[err.status_code]}: {err.message}") from None
            tally.failed[request.key] = _failure(err, timeout, max_retries)
        except (openai.APIConnectionError, ValueError, IndexError, AttributeError) as err:
            tally.failed[request.key] = _failure(err, timeout, max_retries)
        else:
            usage = completion.usage
            prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
            completion_tokens = getattr(usage, "completion_tokens", 0) or 0
            journal.append({"key": request.key, "user": request.user, "style": request.style,
                            "sample": request.sample, "reply": reply, "finish_reason": choice.finish_reason,
                            "model": completion.model, "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens, "retries": raw.retries_taken,
                            "time": round(time.time(), 3)})
            tally.answered += 1
            tally.retries += raw.retries_taken
            tally.prompt_tokens += prompt_tokens
            tally.completion_tokens += completion_tokens
        bar.update(1)
        bar.set_postfix_str(f"tokens {tally.prompt_tokens}+{tally.completion_tokens}, "
                            f"retries {tally.retries}, failed {len(tally.failed)}", refresh=False)

    async def worker() -> None:
        while queue:
            await ask(queue.pop())

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, len(requests))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        bar.close()
    return tally

