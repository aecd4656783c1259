"""The recipes a user would pick instead of hfdistill, run on the same data for side-by-side tables."""
