"""The live event stream of a job: typed events, and the resumable flow that reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from finetune_lab.client._sse import ServerSentEvent
from finetune_lab.client._streaming import EventFlow
from finetune_lab.client._transport import RequestSpec
from finetune_lab.client.resources._prediction_files import predictions_path
from finetune_lab.schema import HeartbeatEvent, PredictionsEvent, RoundCompleteEvent, WireModel

STREAM_EVENT_MODELS: dict[str, type[WireModel]] = {
    "predictions": PredictionsEvent,
    "round_complete": RoundCompleteEvent,
    "heartbeat": HeartbeatEvent,
}


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event: `event` is `predictions`, `round_complete` or `heartbeat`, and
    `data` the matching model (`PredictionsEvent`, `RoundCompleteEvent`, `HeartbeatEvent`);
    an event kind this SDK does not know yet keeps its parsed JSON as a plain value."""

    id: int
    event: str
    data: Any = field(repr=False)


def _typed(raw: ServerSentEvent) -> StreamEvent | None:
    if raw.id is None or not raw.id.isdigit():
        return None
    payload = orjson.loads(raw.data)
    model = STREAM_EVENT_MODELS.get(raw.event)
    return StreamEvent(int(raw.id), raw.event, model.from_json_data(payload) if model else payload)


def stream_flow(
    job_id: str, last_event_id: int | None, max_reconnects: int
) -> EventFlow[StreamEvent]:
    def request(last: int | None) -> RequestSpec[None]:
        params = {"last_event_id": last}
        return RequestSpec(
            "GET", predictions_path(job_id, "stream"), lambda _r: None, params=params
        )

    return EventFlow(
        request,
        _typed,
        last_id=last_event_id,
        max_reconnects=max_reconnects,
        name=f"the event stream of {job_id!r}",
    )
