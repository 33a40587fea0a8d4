"""Pure pieces of `orchestrate optimize`: the search space checked against the config schema, the
objective scores, train/test and walk-forward ranges, and the trial a Dask worker runs."""
