"""A minimal Server-Sent Events reader for tests and benchmarks (the browser's EventSource, in Python)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    """One dispatched event: its type, id (None when the event set none) and data."""

    event: str
    id: str | None
    data: str

    def json(self) -> Any:
        """The data, parsed as JSON."""
        return json.loads(self.data)


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from an SSE line stream, dispatched at each blank line as EventSource does; comments skipped."""
    event, event_id, data = "message", None, []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield Event(event, event_id, "\n".join(data))
            event, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)
