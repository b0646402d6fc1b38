"""The HTTP API: OpenAI's `/v1/completions`, `/v1/chat/completions` and `/v1/models`, plus
`/healthz`, in front of the engine's batcher.

Per request, before any work is queued: the consumer from its API key (the policy's
`roles.consumer_keys`; none or unknown: 401), a withdrawn expert named in `only` (409, with when
and by whom), experts the consumer is not entitled to (403), unknown experts, a prompt that does
not fit the context and every malformed field (400). A full queue is a 503 with `Retry-After`.
Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from components.batch_generation import Sampling
from components.batcher import Batcher, QueueFull
from components.errors import ConfigError, GovernanceError
from components.runtime import selection
from flows.serving.engine import (
    Engine,
    GenerationJob,
    GenerationUnavailable,
    RowResult,
    ServedRelease,
)
from flows.serving.schema import (
    AttributionOut,
    ChatChoice,
    ChatCompletion,
    ChatMessageOut,
    ChatRequest,
    Choice,
    Completion,
    CompletionRequest,
    GenerationFields,
    ModelCard,
    ModelList,
    Usage,
)
from flows.serving.settings import ServeSettings

log = logging.getLogger(__name__)
RETRY_AFTER_S = 1


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.headers = headers or {}


def _error(status: int, message: str, kind: str, param: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": None}}, status_code=status, headers=headers)


def consumer_of(authorization: str | None, settings: ServeSettings) -> str:
    """The consumer whose API key the request carries (policy in force, read per request: a
    revoked key stops at once)."""
    if not settings.authenticate:
        return "anonymous"
    from flows.policy import policy_in_force
    from governance.access import consumer_for_key

    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "no API key: send `Authorization: Bearer <key>` (an operator makes "
                       "one with `flexo policy key --consumer NAME`)", "authentication_error")
    consumer = consumer_for_key(policy_in_force(), key.strip())
    if consumer is None:
        raise ApiError(401, "unknown API key; ask an operator for one (`flexo policy key`)",
                       "authentication_error")
    return consumer


def admitted_experts(consumer: str, served: ServedRelease, fields: GenerationFields,
                     ) -> tuple[list[str] | None, list[str]]:
    """`only` and `exclude` as this consumer may use them on `served`, or the refusal."""
    from flows.policy import consumer_selection
    from flows.withdrawals import refuse_denied

    only, exclude = fields.experts.only, fields.experts.exclude
    try:
        refuse_denied(consumer, only or [])
    except GovernanceError as e:
        raise ApiError(409, str(e), "withdrawn_expert", "experts.only") from None
    try:
        only = consumer_selection(consumer, served.name, only, served.names[1:])
    except GovernanceError as e:
        raise ApiError(403, str(e), "permission_error", "experts.only") from None
    try:
        selection(served.names, only, exclude)
    except ConfigError as e:
        raise ApiError(400, str(e), param="experts") from None
    return only, exclude


def admission(authorization: str | None, settings: ServeSettings, served: ServedRelease,
              fields: GenerationFields) -> tuple[str, list[str] | None, list[str]]:
    """Who asks, and the experts it may have (file reads and maybe a ledger entry: run off the
    event loop)."""
    consumer = consumer_of(authorization, settings)
    return consumer, *admitted_experts(consumer, served, fields)


def _attribution(result: RowResult) -> AttributionOut | None:
    found = result.attribution
    return None if found is None else AttributionOut(routing=found.routing, loo=found.loo)


class Feed:
    """A request's new tokens, from the worker thread to the event loop: (prompt index, token
    id, or None once that prompt is done). The worker wakes the loop only when the stream waits
    for it (each wake-up is a system call and a turn of the loop): once per gathering of new
    tokens, and during a pause between chunks only for a prompt that finished."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.items, self.lock = loop, [], threading.Lock()
        self.ready = asyncio.Event()
        self.signalled = True  # a wake-up is on its way or nobody waits: pushes stay quiet
        self.finish_only = False  # the stream pauses: only a finished prompt wakes it

    def push(self, index: int, token: int | None) -> None:
        with self.lock:
            self.items.append((index, token))
            if self.signalled or (token is not None and self.finish_only):
                return
            self.signalled = True
        self.loop.call_soon_threadsafe(self.ready.set)

    async def _wait(self, finish_only: bool, timeout: float | None = None) -> None:
        with self.lock:
            if any(t is None for _, t in self.items) if finish_only else self.items:
                return
            self.ready.clear()
            self.signalled, self.finish_only = False, finish_only
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        with self.lock:
            self.signalled = True

    async def take(self) -> list[tuple[int, int | None]]:
        """The items pushed since the last take; waits for one if there are none."""
        await self._wait(finish_only=False)
        with self.lock:
            items, self.items = self.items, []
        return items

    async def pause(self, seconds: float) -> None:
        """Let tokens gather for up to `seconds`; a prompt that finishes ends it at once (its
        last chunk goes out without delay)."""
        await self._wait(finish_only=True, timeout=seconds)


class IncrementalText:
    """A row's text, handed out in pieces that never split a character: new tokens are decoded
    with the few before them (not the whole row again), as vLLM's detokenizer does."""

    def __init__(self, tokenizer):
        self.tokenizer, self.tokens = tokenizer, []
        self.prefix, self.read = 0, 0  # tokens[prefix:read] were decoded and sent

    def add(self, tokens: list[int]) -> str:
        self.tokens += tokens
        decode = self.tokenizer.decode
        sent = decode(self.tokens[self.prefix:self.read], skip_special_tokens=True)
        text = decode(self.tokens[self.prefix:], skip_special_tokens=True)
        if len(text) <= len(sent) or text.endswith("\ufffd"):  # half a character: wait
            return ""
        self.prefix, self.read = self.read, len(self.tokens)
        return text[len(sent):]


def create_app(engine: Engine, settings: ServeSettings,
               watcher: contextlib.AbstractContextManager | None = None) -> FastAPI:
    """The app; `watcher` (entered for the app's lifetime) offers new releases to swap in."""
    batcher: Batcher[GenerationJob] = Batcher(engine.run_batch, settings.batching,
                                              executor=engine.executor)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        with watcher if watcher is not None else contextlib.nullcontext():
            yield
        await batcher.drain()  # requests admitted before shutdown still finish
        await asyncio.get_running_loop().run_in_executor(None, engine.close)

    app = FastAPI(title="flexo", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher, app.state.engine = batcher, engine

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.message, e.kind, e.param, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        why = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if first.get("type") == "json_invalid":
            return _error(400, "the request body is not valid JSON", "invalid_request_error")
        return _error(400, f"{where or 'body'}: {why}", "invalid_request_error", where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), "invalid_request_error")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, e: Exception) -> JSONResponse:
        log.exception("request failed")
        return _error(500, f"internal error ({type(e).__name__}); see the server's log",
                      "server_error")

    @app.get("/healthz")
    async def healthz() -> dict:
        served = engine.current
        return {"status": "ok", "release": served.name, "model": served.model_id,
                "queued": batcher.queued, "batches": batcher.batches_run,
                "busy_seconds": round(batcher.busy_s, 3), "generation_pid": engine.pid}

    @app.get("/v1/models")
    async def models(request: Request) -> ModelList:
        consumer_of(request.headers.get("authorization"), settings)
        served = engine.current
        return ModelList(data=[ModelCard(id=served.model_id, created=served.created,
                                         experts=served.names[1:])])

    async def admit(request: Request, fields: GenerationFields, prompts: list[list[int]],
                    stream: bool) -> tuple[ServedRelease, list[asyncio.Future], Feed]:
        """Check the request and queue one job per prompt; returns the futures and, for a
        stream, the feed its tokens arrive on."""
        served = engine.current
        if fields.model not in {served.model_id, served.name, settings.alias, "flexo"}:
            raise ApiError(404, f"model '{fields.model}' is not served here; this server serves "
                           f"{served.model_id} (GET /v1/models)", param="model")
        consumer, only, exclude = await run_in_threadpool(
            admission, request.headers.get("authorization"), settings, served, fields)
        for ids in prompts:
            if len(ids) + fields.max_tokens > served.context:
                raise ApiError(400, f"the prompt ({len(ids)} tokens) and max_tokens "
                               f"({fields.max_tokens}) exceed the model's context of "
                               f"{served.context} tokens; shorten the prompt or ask for fewer "
                               f"tokens", param="prompt")
        sampling = Sampling(temperature=fields.temperature, top_p=fields.top_p,
                            seed=fields.seed)
        tokens = Feed(asyncio.get_running_loop())

        def sink_for(index: int):
            return lambda token: tokens.push(index, token)

        futures: list[asyncio.Future] = []
        try:
            for index, ids in enumerate(prompts):
                job = GenerationJob(prompt_ids=ids, max_tokens=fields.max_tokens,
                                    only=tuple(only) if only is not None else None,
                                    exclude=tuple(exclude), sampling=sampling,
                                    attribution=fields.attribution, consumer=consumer,
                                    sink=sink_for(index) if stream else None)
                future = batcher.enqueue(job.key, job)
                future.add_done_callback(lambda _f, i=index: tokens.push(i, None))
                futures.append(future)
        except QueueFull as e:
            for future in futures:
                future.cancel()
            raise ApiError(503, f"the server is busy ({e}); retry after {RETRY_AFTER_S} s",
                           "server_busy", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        return served, futures, tokens

    def tokenized(served: ServedRelease, texts: list[str]) -> list[list[int]]:
        ids = [served.tokenizer(t).input_ids for t in texts]
        if any(not x for x in ids):
            raise ApiError(400, "the prompt is empty once tokenized; send text to continue",
                           param="prompt")
        return ids

    def chat_prompt(served: ServedRelease, body: ChatRequest) -> list[int]:
        if not served.has_chat_template:
            raise ApiError(400, f"{served.model_id}'s tokenizer has no chat template, so it "
                           f"cannot take chat messages; use /v1/completions with a prompt",
                           param="messages")
        text = served.tokenizer.apply_chat_template(
            [m.model_dump() for m in body.messages], tokenize=False, add_generation_prompt=True)
        return tokenized(served, [text])[0]

    async def results(futures: list[asyncio.Future]) -> list[RowResult]:
        done = await asyncio.gather(*futures, return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, ConfigError):
                raise ApiError(409, f"{outcome} (the release changed while the request waited; "
                               f"send it again)")
            if isinstance(outcome, GenerationUnavailable):
                raise ApiError(503, str(outcome), "server_busy",
                               headers={"Retry-After": str(RETRY_AFTER_S)})
            if isinstance(outcome, BaseException):
                raise outcome
        return done

    def chunks(kind: str, ident: str, created: int, served: ServedRelease,
               prompts: list[list[int]]):
        """How a stream's chunks look (OpenAI's completion or chat chunk): a piece of text, or
        (with the row's result) its finish reason, attribution and usage."""

        def chunk(index: int, text: str, finish: str | None, result: RowResult | None) -> dict:
            choice = {"index": index, "finish_reason": finish,
                      "attribution": None if result is None else _dump(_attribution(result))}
            if kind == "chat.completion.chunk":
                choice["delta"] = {"content": text} if text else {}
            else:
                choice.update(text=text, logprobs=None)
            last = {"experts_on": result.experts_on,
                    "usage": usage([prompts[index]], [result]).model_dump()} if result else {}
            return {"id": ident, "object": kind, "created": created, "model": served.model_id,
                    "release": served.name, "choices": [choice], **last}

        return chunk

    def usage(prompts: list[list[int]], rows: list[RowResult]) -> Usage:
        p, c = sum(map(len, prompts)), sum(len(r.tokens) for r in rows)
        return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)

    async def stream(served: ServedRelease, futures: list[asyncio.Future], tokens: Feed,
                     chunk) -> StreamingResponse:
        """Server-sent events: a chunk per piece of text (the tokens that arrived since the last
        one, at most one chunk per `stream_interval_s`), a last chunk per prompt with its
        finish reason (and attribution), then `[DONE]`."""
        pieces = [IncrementalText(served.tokenizer) for _ in futures]

        def finished(index: int) -> str:
            future = futures[index]
            if future.cancelled() or future.exception() is not None:
                message = "cancelled" if future.cancelled() else str(future.exception())
                return f"data: {json.dumps({'error': {'message': message}})}\n\n"
            result: RowResult = future.result()
            return f"data: {json.dumps(chunk(index, '', result.finish_reason, result))}\n\n"

        async def events() -> AsyncIterator[str]:
            done = 0
            while done < len(futures):
                out, new, ended = [], {}, []
                for index, token in await tokens.take():
                    if token is None:
                        ended.append(index)
                    else:
                        new.setdefault(index, []).append(token)
                text = {i: pieces[i].add(ids) for i, ids in new.items()}
                out += [chunk_line(i, piece) for i, piece in text.items() if piece]
                out += [finished(i) for i in ended]
                done += len(ended)
                if out:
                    yield "".join(out)
                    if done < len(futures) and settings.stream_interval_s:
                        await tokens.pause(settings.stream_interval_s)
            yield "data: [DONE]\n\n"

        def chunk_line(index: int, piece: str) -> str:
            return f"data: {json.dumps(chunk(index, piece, None, None))}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def answer(request: Request, body: GenerationFields, prompts: list[list[int]],
                     stream_kind: str, build):
        """Admit the request; stream it, or wait for its rows and `build` the response."""
        served, futures, tokens = await admit(request, body, prompts, body.stream)
        prefix = "chatcmpl" if stream_kind.startswith("chat") else "cmpl"  # as OpenAI's ids
        ident, created = f"{prefix}-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return await stream(served, futures, tokens,
                                chunks(stream_kind, ident, created, served, prompts))
        rows = await results(futures)
        return build(id=ident, created=created, model=rows[0].model_id,
                     release=rows[0].release, experts_on=rows[0].experts_on,
                     usage=usage(prompts, rows),
                     texts=[served.tokenizer.decode(r.tokens, skip_special_tokens=True)
                            for r in rows], rows=rows)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request):
        def build(texts: list[str], rows: list[RowResult], **common) -> Completion:
            return Completion(**common, choices=[
                Choice(index=i, text=text, finish_reason=r.finish_reason,
                       attribution=_attribution(r))
                for i, (text, r) in enumerate(zip(texts, rows, strict=True))])

        prompts = tokenized(engine.current, body.prompts)
        return await answer(request, body, prompts, "text_completion", build)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest, request: Request):
        def build(texts: list[str], rows: list[RowResult], **common) -> ChatCompletion:
            return ChatCompletion(**common, choices=[
                ChatChoice(index=0, message=ChatMessageOut(content=texts[0]),
                           finish_reason=rows[0].finish_reason,
                           attribution=_attribution(rows[0]))])

        prompts = [chat_prompt(engine.current, body)]
        return await answer(request, body, prompts, "chat.completion.chunk", build)

    return app


def _dump(value) -> dict | None:
    return None if value is None else value.model_dump()
