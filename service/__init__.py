"""tally: a visit counter built the way production services are."""

__version__ = "0.1.0"
