"""The client SDK for agents and routers; it needs aiokafka and pydantic, never Faust.

- ``TraceProducer`` / ``SyncTraceProducer``: send traces and late feedback (streams/sdk/producer.py).
- ``RoutingTableView`` / ``LearnedRouter``: read the live routing table and route with it
  (streams/sdk/routing.py).
"""

from streams.sdk.producer import SyncTraceProducer, TraceProducer
from streams.sdk.routing import LearnedRouter, RoutingTableView

__all__ = ["LearnedRouter", "RoutingTableView", "SyncTraceProducer", "TraceProducer"]
