"""`make bench`: the performance figures of SPEC §12, each against a same-run baseline."""
