"""Stand-ins for the optimizer module, one per way it can fail (and one that succeeds)."""
