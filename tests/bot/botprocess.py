"""`opsconsole bot` as a real subprocess in HTTP mode on a free port, for the tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from opsconsole.testing.ports import free_port

OPSCONSOLE = str(Path(sys.executable).parent / "opsconsole")
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"


def bot_environment(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSCONSOLE_", "SLACK_"))}
    env.update(
        {
            "OPSCONSOLE_HOME": str(home),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": api_url,
            "OPSCONSOLE_BOT_POLL_S": "0.5",
            "OPSCONSOLE_BOT_NOTICE_S": "3600",
        }
    )
    env.update(extra)
    return env


class BotProcess:
    def __init__(self, process: subprocess.Popen[str], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return str(response.read().decode())

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_bot(home: Path, env: Mapping[str, str], *, name: str = "bot") -> Iterator[BotProcess]:
    port = free_port()
    log = home / f"{name}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [OPSCONSOLE, "bot", "--port", str(port)],
            env=dict(env),
            text=True,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    bot = BotProcess(process, port, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"opsconsole bot exited {process.returncode}:\n{bot.output()}")
        try:
            bot.get("/healthz")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not come up in 60 s:\n{bot.output()}") from None
            time.sleep(0.1)
    try:
        yield bot
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
