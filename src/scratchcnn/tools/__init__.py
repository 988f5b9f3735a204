"""Tools around the engine: gradient checking, speed measurement, and what a result was made
with (machine, versions, commit, settings)."""
