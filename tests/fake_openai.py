"""A fake OpenAI-compatible chat server on loopback, for judge tests and benchmarks.

Runs FastAPI under uvicorn in a background thread on ``127.0.0.1`` and a free port.
It can add latency, answer 429/500 on a share of requests, and records how many
requests were in flight at once. Its reply is deterministic: the text inside the
last ``[[…]]`` of the request's messages (so a test's completion decides what the
judge says), else ``"Score: 1"``.

    with FakeOpenAI(latency=0.01, failure_rate=0.3) as server:
        EndpointConfig(base_url=server.base_url)
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["FakeOpenAI", "default_responder"]

_MARK = re.compile(r"\[\[(.*?)\]\]", re.S)


def default_responder(messages: list[dict[str, Any]]) -> str:
    """The judge's reply: the last ``[[…]]`` in the messages, else ``"Score: 1"``."""
    text = "\n".join(m["content"] if isinstance(m.get("content"), str) else str(m.get("content")) for m in messages)
    found = _MARK.findall(text)
    return found[-1] if found else "Score: 1"


class FakeOpenAI:
    """The server; use as a context manager.

    Args:
        latency: seconds each answer waits (as an LLM would).
        failure_rate: share of requests answered with an error instead (429 and 500 alternate).
        retry_after_ms: ``retry-after-ms`` header sent with each error answer (OpenAI's header).
        responder: ``messages -> reply text``.
        known_models: when given, other model names get a 404 (as a real server answers).
        seed: seeds which requests fail.

    Attributes:
        requests: requests received (failed ones included).
        failures: requests answered with an error.
        max_in_flight: most requests handled at the same time.
        payloads: JSON bodies received.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        retry_after_ms: int = 5,
        responder: Callable[[list[dict[str, Any]]], str] = default_responder,
        known_models: Collection[str] | None = None,
        seed: int = 0,
    ):
        self.latency = latency
        self.failure_rate = failure_rate
        self.retry_after_ms = retry_after_ms
        self.responder = responder
        self.known_models = set(known_models) if known_models is not None else None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.failures = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.payloads: list[dict[str, Any]] = []
        self.port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _app(self) -> Any:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            body = await request.json()
            if self.known_models is not None and body.get("model") not in self.known_models:
                return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, status_code=404)
            with self._lock:
                self.requests += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                self.payloads.append(body)
                fail = self._rng.random() < self.failure_rate
                if fail:
                    self.failures += 1
                    status = 429 if self.failures % 2 else 500
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                if fail:
                    headers = {"retry-after-ms": str(self.retry_after_ms)}
                    return JSONResponse(
                        {"error": {"message": f"fake failure {status}"}}, status_code=status, headers=headers
                    )
                reply = self.responder(body["messages"])
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
                return {
                    "id": f"fake-{self.requests}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(reply.split()),
                        "total_tokens": prompt_tokens + len(reply.split()),
                    },
                }
            finally:
                with self._lock:
                    self.in_flight -= 1

        return app

    def start(self) -> FakeOpenAI:
        import uvicorn

        config = uvicorn.Config(self._app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start within 10 s")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def create_app() -> Any:
    """The app for ``uvicorn --factory`` workers, configured by ``FAKE_OPENAI_LATENCY`` /
    ``FAKE_OPENAI_FAILURE_RATE`` (each worker process builds its own)."""
    import os

    return FakeOpenAI(
        latency=float(os.environ.get("FAKE_OPENAI_LATENCY", "0")),
        failure_rate=float(os.environ.get("FAKE_OPENAI_FAILURE_RATE", "0")),
    )._app()


def main() -> None:
    """Serve the fake in the foreground, in its own process(es), as a real judge server runs."""
    import argparse
    import os
    import sys
    from pathlib import Path

    ap = argparse.ArgumentParser(description="fake OpenAI-compatible chat server on 127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--failure-rate", type=float, default=0.0)
    ap.add_argument(
        "--workers", type=int, default=1, help="server processes (a real judge server is rarely the bottleneck)"
    )
    args = ap.parse_args()
    import uvicorn

    os.environ["FAKE_OPENAI_LATENCY"] = str(args.latency)
    os.environ["FAKE_OPENAI_FAILURE_RATE"] = str(args.failure_rate)
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    uvicorn.run(
        "fake_openai:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
