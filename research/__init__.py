"""Studies of hfdistill: the scripts behind docs/results.md and their raw outputs. Never imported by the package;
run each from the repository root as `python -m research.<script> ...`."""
