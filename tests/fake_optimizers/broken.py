"""Exits 0 with output that is not JSON."""

print("{not json at all")
