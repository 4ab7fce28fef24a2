import os

# No model hub is reachable from these machines: fail fast instead of hanging on a lookup.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
