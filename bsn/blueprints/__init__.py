"""REST areas, one blueprint each."""
