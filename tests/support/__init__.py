"""Libraries the tests build their fixtures with (not tests themselves)."""
