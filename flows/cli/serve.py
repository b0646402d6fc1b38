"""`flexo serve`: the production release (or any version, or a model directory) behind an
OpenAI-compatible HTTP API, until Ctrl-C (in-flight requests finish first)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from components.batcher import REMEMBERED_BATCHES, Batching
from components.errors import ConfigError
from flows.cli.app import app, command, out
from flows.serving.settings import ServeSettings

SERVE_LIBRARIES = ("transformers", "mlflow", "uvicorn", "fastapi")
MIN_OPEN_FILES = 4096  # a thousand concurrent connections, plus the model's files
DEFAULT = ServeSettings()


@command(app, log=SERVE_LIBRARIES)
def serve(
    release: Annotated[str, typer.Option(help="A registry alias to follow (swapped in without a "
                                         "restart when it moves) or a version number.")
                       ] = "production",
    model: Annotated[Path | None, typer.Option(help="Serve this model directory instead of a "
                                               "registry release.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most requests generated together.")
                         ] = DEFAULT.batching.max_batch,
    batch_wait_ms: Annotated[float, typer.Option(
        help="How long a request waits at most for others to batch with (less once as many "
             f"wait as any of the last {REMEMBERED_BATCHES} batches had clients, or once none "
             "came for --batch-gap-ms).")
                             ] = DEFAULT.batching.max_wait_s * 1000,
    batch_gap_ms: Annotated[float, typer.Option(
        help="A batch waiting for company starts once no request arrived for this long.")
                            ] = DEFAULT.batching.gap_s * 1000,
    queue_size: Annotated[int, typer.Option(help="Requests waiting at most; more get 503.")
                          ] = DEFAULT.batching.max_queue,
    stream_interval_ms: Annotated[float, typer.Option(
        help="Least time between two chunks of one stream (tokens made meanwhile go out "
             "together; 0: a chunk per token).")] = DEFAULT.stream_interval_s * 1000,
    poll_seconds: Annotated[float, typer.Option(help="How often the alias is checked.")] = 5.0,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys, every "
                                          "request as consumer 'anonymous' (local use only).")
                       ] = False,
) -> None:
    """Serve /v1/completions, /v1/chat/completions, /v1/models and /healthz: experts per
    request, the consumer's entitlements by API key, withdrawals on the next request, an
    attribution record per request."""
    import resource

    import uvicorn

    from flows.policy import policy_in_force
    from flows.serving.app import create_app
    from flows.serving.engine import Engine
    from flows.serving.watch import AliasWatch, directory_release, registry_release, resolve_release

    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a TCP port; use 1-65535")
    if min(max_batch, queue_size) < 1 or min(batch_wait_ms, batch_gap_ms,
                                              stream_interval_ms) < 0:
        raise ConfigError("--max-batch and --queue-size must be at least 1, --batch-wait-ms, "
                          "--batch-gap-ms and --stream-interval-ms at least 0")
    if not no_auth and not policy_in_force().roles.consumer_keys:
        raise ConfigError("the policy in force lists no API keys (roles.consumer_keys); make "
                          "one with `flexo policy key --consumer NAME`, or serve --no-auth for "
                          "local use only")
    settings = ServeSettings(authenticate=not no_auth, stream_interval_s=stream_interval_ms / 1000,
                             batching=Batching(max_batch=max_batch, max_wait_s=batch_wait_ms / 1000,
                                               gap_s=batch_gap_ms / 1000, max_queue=queue_size))
    watcher = None
    if model is not None:
        engine = Engine(directory_release(model), gather_s=settings.gather_s)
    else:
        from flows.tracking import runs

        runs.configure()
        version = resolve_release(release)
        engine = Engine(registry_release(version), gather_s=settings.gather_s)
        if not release.isdigit():
            settings.alias = release
            watcher = AliasWatch(release, version, offer=engine.offer, every_s=poll_seconds)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < MIN_OPEN_FILES:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(MIN_OPEN_FILES, hard), hard))
    api = create_app(engine, settings, watcher)
    served = engine.current
    following = f", following '{release}' every {poll_seconds:g} s" if watcher else ""
    out.print(f"serving {served.model_id} (experts: {', '.join(served.names[1:]) or 'none'}) at "
              f"http://{host}:{port}/v1{following}; Ctrl-C stops after in-flight requests",
              highlight=False, soft_wrap=True)
    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_config=None,
                                           access_log=False, timeout_graceful_shutdown=60))
    server.run()  # its shutdown stops the engine (after the requests in flight)
    out.print(f"stopped: {api.state.batcher.batches_run} batches served", highlight=False)
