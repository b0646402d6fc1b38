"""What a user sees while flexo works, and where everything else goes.

The console gets the story: one live display (the step, what runs now, a bar for long work) and the
figures that matter. Everything libraries say (Prefect's per-task state lines, MLflow's and
Python's warnings, transformers' loading bars, our own progress records) goes to a log file under
`FLEXO_HOME/logs/`, named on screen; `flexo --verbose ...` shows it on the console too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from components.progress import BARS_ENV

# Loggers that libraries give console handlers of their own (not propagating to the root).
LIBRARY_LOGGERS = ("mlflow", "transformers", "prefect", "uvicorn", "fastapi")
# Chatty at INFO and of no use to a reader of flexo's log.
MUTED = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "alembic": logging.WARNING,
         "urllib3": logging.WARNING, "matplotlib": logging.WARNING, "PIL": logging.WARNING,
         "great_expectations": logging.WARNING, "asyncio": logging.WARNING}
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Where a record's activity comes from, for the live display's status line.
FLOW_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
OWN_LOGGERS = ("components", "flows")
LOG_HANDLER = "flexo-command-log"


def current_log() -> Path | None:
    """The file the running command logs to (see `command_log`), if any."""
    for h in logging.getLogger().handlers:
        if h.get_name() == LOG_HANDLER and isinstance(h, logging.FileHandler):
            return Path(h.baseFilename)
    return None


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextmanager
def command_log(command: str, verbose: bool = False, home: Path | None = None,
                libraries: tuple[str, ...] = LIBRARY_LOGGERS) -> Iterator[Path]:
    """Send every library's logs and Python warnings to `FLEXO_HOME/logs/<command>-<time>.log`
    for the duration of a command (and to the console too when `verbose`); yields the path.

    Prefect, MLflow and transformers install console handlers of their own; these are taken off
    for the command and put back afterwards, so nothing leaks between commands run in one process
    (tests)."""
    from components.clock import stamp
    from flows.settings import flexo_home

    _let_libraries_configure_logging(libraries)
    rank = f"-rank{os.environ['RANK']}" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    path = (home or flexo_home()) / "logs" / f"{command}-{stamp()}{rank}.log"  # rank: torchrun
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.set_name(LOG_HANDLER)
    root = logging.getLogger()
    saved = {"root_level": root.level, "handlers": {}, "propagate": {}, "levels": {}}
    for name in ("", *LIBRARY_LOGGERS):
        logger = logging.getLogger(name)
        saved["handlers"][name] = _console_handlers(logger)
        saved["propagate"][name] = logger.propagate
        for h in saved["handlers"][name]:
            logger.removeHandler(h)
        logger.propagate = name != "" or logger.propagate
    for name, level in MUTED.items():
        saved["levels"][name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    echo = None
    if verbose:  # through the console the live display draws on, so lines land above it
        from rich.logging import RichHandler

        from flows.cli.app import out

        echo = RichHandler(console=out, show_path=False, markup=False)
        root.addHandler(echo)
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for h in (handler, echo):
            if h is not None:
                root.removeHandler(h)
                h.close()
        root.setLevel(saved["root_level"])
        for name, handlers in saved["handlers"].items():
            logger = logging.getLogger(name)
            logger.propagate = saved["propagate"][name]
            for h in handlers:
                logger.addHandler(h)
        for name, level in saved["levels"].items():
            logging.getLogger(name).setLevel(level)


def _let_libraries_configure_logging(libraries: tuple[str, ...]) -> None:
    """Prefect, MLflow and transformers set up their console handlers when first imported; import
    the ones this command uses now, so `command_log` can take the handlers off rather than race
    them. Also switch off transformers' weight-loading bars (tqdm, not logging) and MLflow's
    artifact bars."""
    if "transformers" in libraries:
        import transformers.utils.logging as hf_logging

        hf_logging.disable_progress_bar()
    if "prefect" in libraries:
        import prefect.main  # noqa: F401  (runs Prefect's logging set-up)
    if "mlflow" in libraries:
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        import flows.tracking.runs  # noqa: F401  (MLflow sets up its logging at import)


class _Status(logging.Handler):
    """Feeds INFO records from flexo's flows and components to the live display's status line;
    records carrying `flexo_progress` (step, total) drive its bar."""

    def __init__(self, display: StoryDisplay):
        super().__init__(level=logging.INFO)
        self.display = display
        self.where = ""  # the flow and task that last spoke: components' records run inside it

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith((*FLOW_LOGGERS, *OWN_LOGGERS)):
            return
        if flow := getattr(record, "flow_name", None):
            self.where = " › ".join(x for x in (flow, getattr(record, "task_name", None)) if x)
        message = record.getMessage().splitlines()[0][:100]
        self.display.status(f"{self.where}: {message}" if self.where else message,
                            getattr(record, "flexo_progress", None))


class StoryDisplay:
    """One live display for a command that runs flows: each step printed as a line as it
    starts; below it, while work goes on, a spinner or bar with what runs now and the time.

    Off a terminal (CI, pipes, tests) only the step lines appear. Component progress bars are
    switched off meanwhile (`FLEXO_PROGRESS_BARS=0`): the display draws their records instead."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 BarColumn(bar_width=24), TimeElapsedColumn(),
                                 console=console, transient=True, redirect_stdout=False,
                                 redirect_stderr=False)
        self.task = self.progress.add_task("starting", total=None)
        self.handler = _Status(self)
        self._bars: str | None = None

    def __enter__(self) -> Self:
        self._bars = os.environ.get(BARS_ENV)
        os.environ[BARS_ENV] = "0"
        logging.getLogger().addHandler(self.handler)
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        logging.getLogger().removeHandler(self.handler)
        if self._bars is None:
            os.environ.pop(BARS_ENV, None)
        else:
            os.environ[BARS_ENV] = self._bars

    def step(self, text: str) -> None:
        """A step of the story: a line that stays."""
        self.console.print(f"[bold cyan]{text}[/bold cyan]", highlight=False, soft_wrap=True)

    def status(self, text: str, progress: tuple[int, int] | None = None) -> None:
        """What runs now (replaced by the next status); with (done, total) the bar fills."""
        done, total = progress if progress else (None, None)
        self.progress.update(self.task, description=text, completed=done or 0, total=total)
