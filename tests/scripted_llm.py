"""A real local HTTP server speaking the OpenAI chat-completions format, playing a scripted optimizer.

Each request is answered by ``responder(request_json) -> Reply``; every request is recorded so tests can
read the prompts the optimizer sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    delay: float = 0.0
    raw: bytes | None = None  # a body sent as is (a broken proxy page, say)


@dataclass
class ScriptedLLM:
    responder: Callable[[dict[str, Any]], Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def prompts(self) -> list[str]:
        return [r["messages"][-1]["content"] for r in self.requests]


def chat_answer(content: str, model: str = "scripted") -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
    ).encode()


@contextmanager
def scripted_llm(responder: Callable[[dict[str, Any]], Reply]) -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM(responder)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body["_path"] = self.path
            body["_auth"] = self.headers.get("Authorization")
            with lock:
                llm.requests.append(body)
                reply = llm.responder(body)
            if reply.delay:
                time.sleep(reply.delay)
            payload = reply.raw if reply.raw is not None else chat_answer(reply.content, body.get("model", ""))
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    llm.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield llm
    finally:
        server.shutdown()
        server.server_close()


def config_answer(params: dict[str, Any], reasoning: str = "scripted") -> str:
    return "Here is my proposal.\n```json\n" + json.dumps({"params": params, "reasoning": reasoning}) + "\n```\n"


def feedback_answer(target: str = "learning", summary: str = "regret comes from early lucky picks") -> str:
    return (
        "```json\n"
        + json.dumps(
            {
                "summary_text": summary,
                "failure_patterns": ["recommends a model after one lucky sample"],
                "primitive_ratings": {"learning": "medium"},
                "suggested_changes": ["require more samples"],
                "target_primitive": target,
            }
        )
        + "\n```"
    )
