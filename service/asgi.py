"""An ASGI app object for runners that import one (Hypercorn's reloader in dev mode)."""

import os

from service import logs, one_write, tracing
from service.app import create_app
from service.settings import Settings

settings = Settings.from_env(os.environ)
logs.configure(settings)
one_write.install()  # as python -m service does
app = create_app(settings, tracer_provider=tracing.tracer_provider(settings))
