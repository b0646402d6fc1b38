"""How `flexo serve` runs: its options' defaults are these (one place for the server, the
batcher and the command line, which reads them without importing the web stack)."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.batcher import Batching


@dataclass
class ServeSettings:
    alias: str | None = None  # the registry alias followed (`production`), if any
    authenticate: bool = True  # False: every request is the consumer `anonymous`
    batching: Batching = field(default_factory=Batching)
    # least time between two chunks of a stream: a chunk per token per request costs a socket
    # write each (16 streams at a few ms a step kept the event loop writing half the time, on
    # the cores generation needs; at 50 ms streaming still held half of the event loop's GIL
    # time); tokens made meanwhile go out in one chunk, the first and the last at once
    stream_interval_s: float = 0.1

    @property
    def gather_s(self) -> float:
        """How often the generation process sends streamed tokens: twice per stream interval,
        so a chunk never waits long for tokens already made."""
        return self.stream_interval_s / 2
