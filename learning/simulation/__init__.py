"""Closed-loop routing simulation: a synthetic fleet with known true qualities, routed by the real router."""
