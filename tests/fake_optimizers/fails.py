"""Writes some output, then fails with exit code 3."""

import sys

print("partial output")
print("Traceback (most recent call last): ValueError: the optimizer broke", file=sys.stderr)
sys.exit(3)
