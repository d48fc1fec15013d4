"""An ASGI app object for runners that import one (Hypercorn's reloader in dev mode)."""

import os

from service import logs, tracing
from service.app import create_app
from service.settings import Settings

settings = Settings.from_env(os.environ)
logs.configure(settings)
app = create_app(settings, tracer_provider=tracing.tracer_provider(settings))
