"""What a replica's routes and middleware share, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment

from service.counter import Counter
from service.metrics import Metrics
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class State:
    """Complete before the app can serve: nothing reads a part that does not exist yet."""

    settings: Settings
    metrics: Metrics
    counter: Counter  # its pool connects on first use and closes at shutdown
    templates: Environment  # the app's Jinja environment: the HTML pages
