"""Start, wait for and stop an OpenAI-compatible server process: one helper for `make serve`'s tests,
the web page (`make webui`), the serving benchmark and any later test that needs a live model.

    from style_tune.deploy.serving import Server, free_port

    with serve_model(MODEL, mode="controllable", style="温柔") as server:   # `make serve` on a free port
        client = OpenAI(base_url=server.base_url, api_key="none")
        ...

``Server(COMMAND, port)`` runs any other server command the same way.

The process runs in a session (process group) of its own, so stopping it ends every process the
engine started; ``stop`` sends SIGTERM to the group, then SIGKILL after a grace period, and checks
that the port is free again. ``start`` waits, for at most ``ready_timeout`` seconds, until
``GET /v1/models`` lists the model, and fails with the tail of the server's log when the process
dies or the time runs out. Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from style_tune import REPO_ROOT
from style_tune.core import defaults
from style_tune.core.steps import fail

#: The model name the servers register (`make serve` on a GPU and on a CPU): clients send it as ``model``.
SERVED_MODEL_NAME = "style-tune"
#: How long a server may take to answer after its start; each waiting helper takes it as its default.
READY_TIMEOUT_S = 120.0
#: The server's API key(s) (`make serve API_KEY=`), passed in the environment, never on a command line
#: the CPU server runs with (one key a line). Clients send theirs from OPENAI_API_KEY.
API_KEYS_ENV = "STYLE_TUNE_API_KEYS"


def read_api_keys(step: str, key: str = "", key_file: str | Path | None = None) -> list[str]:
    """The API keys a server accepts: KEY and the lines of KEY_FILE (blank lines and # comments skipped);
    a key file that cannot be read, or holds none, stops STEP with one line."""
    keys = [key.strip()] if key.strip() else []
    if key_file:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            fail(step, f"API_KEY_FILE={key_file}: {err.strerror or err}; give a file with one key a line")
        found = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            fail(step, f"API_KEY_FILE={key_file} holds no key (one key a line; # starts a comment)")
        keys += found
    bad = [n for n, k in enumerate(keys, 1) if any(c.isspace() or not c.isprintable() for c in k)]
    if bad:
        fail(step, f"API key {bad[0]} has a space or a control character; a key is one printable word")
    return keys


def api_keys_env(keys: list[str]) -> dict[str, str]:
    """The environment entry that hands KEYS to the CPU server (one key a line; none without keys)."""
    return {API_KEYS_ENV: "\n".join(keys)} if keys else {}


def api_keys_from_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The keys :func:`api_keys_env` handed over (an empty list: the server takes no key)."""
    return [key.strip() for key in environ.get(API_KEYS_ENV, "").split("\n") if key.strip()]


def is_loopback(host: str) -> bool:
    """Whether HOST is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(step: str, host: str, keys: Sequence[str]) -> None:
    """Listening beyond loopback without a key lets anyone who reaches the port use the model: refuse."""
    if not keys and not is_loopback(host):
        fail(step, f"listening on {host} without an API key would let anyone who reaches the port use the "
                   "model: set API_KEY=... (or API_KEY_FILE=FILE; clients send it as OPENAI_API_KEY), or "
                   "keep SERVER_HOST=127.0.0.1 (docs/serving.md#security)")


class ServerError(RuntimeError):
    """The server did not come up, or did not go away."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def list_models(base_url: str, timeout: float = 5.0, api_key: str | None = None) -> list[str]:
    """The model ids ``GET {base_url}/models`` lists (``base_url`` ends with ``/v1``)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(f"{base_url}/models", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return [entry["id"] for entry in json.load(response)["data"]]


def wait_until_ready(base_url: str, model: str = SERVED_MODEL_NAME, *, timeout: float = READY_TIMEOUT_S,
                     process: subprocess.Popen | None = None, log: Path | None = None,
                     api_key: str | None = None) -> float:
    """Wait until the server lists ``model``; return the seconds waited. Fail early if ``process`` ends."""
    start = time.monotonic()
    while True:
        if process is not None and process.poll() is not None:
            raise ServerError(f"the server exited with code {process.returncode} before it answered"
                              f"{_log_tail(log)}")
        try:
            if model in list_models(base_url, api_key=api_key):
                return time.monotonic() - start
        except (OSError, ValueError, KeyError):
            pass  # not listening yet, or not answering JSON yet
        if time.monotonic() - start > timeout:
            raise ServerError(f"{base_url} did not list model {model!r} within {timeout:.0f} s"
                              f"{_log_tail(log)}")
        time.sleep(0.5)


def _log_tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.is_file():
        return ""
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return f"; the last lines of {log}:\n" + "\n".join(tail)


class Server:
    """A server command run in its own process group; a context manager that starts and stops it.

    ``command``: the argv that starts it (e.g. ``python -m style_tune.deploy.chat serve MODEL --port N``);
    ``port``: where it listens on 127.0.0.1; ``log``: where its stdout and stderr go (default: a file
    under the system temp dir, named after the port); ``api_key``: the key it wants (sent while waiting).
    """

    def __init__(self, command: Sequence[str], port: int, *, model: str = SERVED_MODEL_NAME,
                 ready_timeout: float = READY_TIMEOUT_S, stop_timeout: float = 20.0,
                 log: Path | None = None, env: dict[str, str] | None = None, cwd: Path | None = None,
                 api_key: str | None = None):
        self.command = [str(part) for part in command]
        self.port = port
        self.model = model
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"style-tune-server-{port}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.api_key = api_key
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Server:
        """Launch the process and wait until it serves the model (what ``with Server(...)`` does)."""
        return self.launch().wait()

    def launch(self) -> Server:
        """Start the process without waiting (start several, then :meth:`wait` for each)."""
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} is already in use; pick another (SERVER_PORT=)")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                            start_new_session=True)
        return self

    def wait(self) -> Server:
        """Wait (at most ready_timeout) until the launched server lists its model; stop it if it fails."""
        try:
            self.startup_s = wait_until_ready(self.base_url, self.model, timeout=self.ready_timeout,
                                              process=self.process, log=self.log, api_key=self.api_key)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End the whole process group (SIGTERM, then SIGKILL), then check the port is free."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                if not _group_alive(process.pid):
                    break
                time.sleep(0.2)  # the leader is gone; give its children a moment, then KILL them
            except subprocess.TimeoutExpired:
                continue
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while port_in_use(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} is still in use after the server stopped")

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def process_group(pgid: int) -> list[int]:
    """The pids of a process group's live processes (from /proc): a server and what it started."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid:
                    pids.append(int(name))
            except ProcessLookupError:
                continue
    return pids


def find_process(pgid: int, word: bytes) -> int:
    """The pid of the process of group PGID whose command line holds WORD (ServerError if none)."""
    for pid in process_group(pgid):
        try:
            if word in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise ServerError(f"no process of group {pgid} runs {word.decode()!r}")


def _group_alive(pgid: int) -> bool:
    """Whether any process of the process group is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def serve_model(model_dir: Path | str, *, mode: str = defaults.MODE, style: str | None = None,
                port: int | None = None,
                ready_timeout: float = READY_TIMEOUT_S, log: Path | None = None,
                make_args: Sequence[str] = (), api_key: str | None = None) -> Server:
    """`make serve` for ``model_dir`` on 127.0.0.1 (a free port unless given), as a :class:`Server`;
    with ``api_key``, `make serve API_KEY=...` (given in the environment, as a user's shell would).

    Exactly what a user runs (on a CPU machine: the CPU server; with a CUDA GPU: lmdeploy), so a test or a
    tool that needs a live model gets the real thing. Use it as a context manager.
    """
    port = port or free_port()
    command = ["make", "-s", "-C", str(REPO_ROOT), "serve", f"MODEL={model_dir}", f"MODE={mode}",
               "SERVER_HOST=127.0.0.1", f"SERVER_PORT={port}", *([f"STYLE={style}"] if style else []),
               *make_args]
    env = {"API_KEY": api_key or ""}  # without one, none: not an API_KEY this process's caller exported
    return Server(command, port, ready_timeout=ready_timeout, log=log, env=env, api_key=api_key)
