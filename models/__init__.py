"""The lecture's models, each runnable as ``python -m models.<name>``."""
