# tally's app image: locked dependencies in a builder stage, a slim non-root runtime.
# Classic builder only (no BuildKit syntax: no RUN --mount, COPY --chmod or heredocs):
# the CI machines' Docker has no buildx.

FROM python:3.14-slim AS builder
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY service ./service
RUN python -m compileall -q service

FROM python:3.14-slim
LABEL org.opencontainers.image.title="tally" \
      org.opencontainers.image.description="A visit counter: Quart on Hypercorn, counting in Redis" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 tally \
    && useradd --system --uid 10001 --gid tally --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin tally
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/service /app/service
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# The probe is service/healthcheck.sh (bash: why, there). A long start period and
# timeout cost nothing (the first good probe ends the one, an answer the other) and keep
# a replica on a busy machine (load 20 on 2 cores: a probe took over 2 s) healthy.
HEALTHCHECK --interval=5s --timeout=10s --start-period=60s --retries=3 \
    CMD ["bash", "/app/service/healthcheck.sh"]
CMD ["python", "-m", "service"]
