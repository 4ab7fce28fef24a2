"""The stream worker: both stages in one Faust app, their state stores, the trace decoder and metrics.

Stage 1 (streams/worker/stage1.py, keyed by trace_id) validates, classifies, joins feedback and emits
per-(class, model) deltas; stage 2 (streams/worker/stage2.py, keyed by query_class) merges them into the
routing tables, SFT pairs and triggers. streams/worker/service.py starts it all.
"""
