"""Reward-algorithm optimizer: replays exported mining sessions under several reward rules (run as a module)."""

# Standard library only: the worker runs this as a bare subprocess, so nothing here may import bsn, Flask or
# SQLAlchemy (tests/test_optimizer_model.py runs it with `python -S` to prove it).
