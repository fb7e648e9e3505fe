"""The Responses API, sans I/O.

* :mod:`.events`: the Codex backend's SSE stream as typed events (a decoder fed
  any chunking), and :class:`.events.Collector`, the state of one response
  (its items, usage and end) built from those events;
* :mod:`.encode`: typed events → the client's ``/v1/responses`` stream and the
  whole ``Response`` object;
* :mod:`.request`: a ``CreateResponse`` body → :class:`.request.ResponsesRequest`,
  and the bodies built from it (the Codex backend's, the web conversation's);
* :mod:`.web`: a web-conversation answer (text, reasoning) → typed events.

The protocol facts these rely on are in ``docs/responses-api.md``.
"""
