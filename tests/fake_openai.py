"""A local server speaking OpenAI's chat-completions wire format, streamed as SSE.

Only a stand-in for the cloud we cannot reach: each response is scripted by the test, and
chunks are shaped exactly like the real API's (`chat.completion.chunk`, `delta.content`,
`delta.tool_calls` with index/id/function name and argument fragments, a last `usage` chunk
with no choices when `stream_options.include_usage` asks for it, `[DONE]`). Token counts are
words, stand-ins for a tokenizer's.
"""

from __future__ import annotations

import json
import time

from aiohttp import web


def text(content: str) -> dict:
    return {"text": content}


def tool_calls(*calls: tuple[str, str]) -> dict:
    """Each call is (name, raw arguments string): the string is sent as is, malformed or not."""
    return {"tool_calls": calls}


class FakeChatServer:
    def __init__(self, script):
        self.script = script  # callable(request_json, n) -> response dict, or an HTTP status int
        self.requests: list[dict] = []
        self._runner = None
        self.base_url = ""

    async def __aenter__(self):
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc):
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer sk-test":
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401)
        body = await request.json()
        self.requests.append(body)
        answer = self.script(body, len(self.requests))
        if isinstance(answer, int):
            return web.json_response({"error": {"message": "scripted failure", "type": "server_error"}}, status=answer)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }

        async def send(delta: dict, finish: str | None = None):
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        if "text" in answer:
            content = answer["text"]
            for i in range(0, len(content), 7):  # small fragments, split mid-word like real streams
                await send({"content": content[i : i + 7]})
            await send({}, "stop")
        else:
            for index, (name, args) in enumerate(answer["tool_calls"]):
                call_id = f"call_{len(self.requests)}_{index}"
                await send(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
                for i in range(0, len(args), 5):
                    await send({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + 5]}}]})
            await send({}, "tool_calls")
        if (body.get("stream_options") or {}).get("include_usage"):  # as the real API: one last chunk, no choices
            prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
            completion = max(1, len(json.dumps(answer).split()))
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            await resp.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
