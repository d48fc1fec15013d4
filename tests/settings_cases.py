"""Bad settings and the one line each must produce: the unit tier checks the reader on every
case, the integration tier the real process (exit 78) on two of them."""

INVALID = [
    ("REDIS_TIMEOUT", "abc", "REDIS_TIMEOUT must be a positive number of seconds, got 'abc'"),
    ("REDIS_TIMEOUT", "0", "REDIS_TIMEOUT must be a positive number of seconds, got '0'"),
    ("REDIS_TIMEOUT", "nan", "REDIS_TIMEOUT must be a positive number of seconds, got 'nan'"),
    (
        "IDEMPOTENCY_TTL",
        "1.5",
        "IDEMPOTENCY_TTL must be a whole number of seconds >= 1, got '1.5'",
    ),
    ("IDEMPOTENCY_TTL", "0", "IDEMPOTENCY_TTL must be a whole number of seconds >= 1, got '0'"),
    ("GRACEFUL_TIMEOUT", "-1", "GRACEFUL_TIMEOUT must be a number of seconds >= 0, got '-1'"),
    ("PORT", "70000", "PORT must be a port number (1-65535), got '70000'"),
    ("REDIS_PORT", "redis", "REDIS_PORT must be a port number (1-65535), got 'redis'"),
    ("REDIS_DB", "-1", "REDIS_DB must be a database number >= 0, got '-1'"),
    ("REDIS_HOST", "a/b", "REDIS_HOST must be a host name or address, got 'a/b'"),
    (
        "REDIS_URL",
        "http://redis:6379",
        "REDIS_URL must be a redis://, rediss:// or unix:// URL, got 'http://redis:6379'",
    ),
    (
        "REDIS_URL",
        "ftp://u:hunter2@x",
        "REDIS_URL must be a redis://, rediss:// or unix:// URL, got 'ftp://u:***@x'",
    ),
    (
        "LOG_LEVEL",
        "loud",
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'",
    ),
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of json, console, got 'xml'"),
    (
        "COUNTER_KEY",
        "two words",
        "COUNTER_KEY must be 1-128 printable characters without spaces, got 'two words'",
    ),
    (
        "REPLICA_ID",
        "x" * 129,
        f"REPLICA_ID must be 1-128 printable characters without spaces, got '{'x' * 129}'",
    ),
    (
        "REDIS_SENTINELS",
        "sentinel-1",
        "REDIS_SENTINELS must be a comma-separated list of host:port (port 1-65535),"
        " got 'sentinel-1'",
    ),
    (
        "REDIS_SENTINELS",
        "sentinel-1:26379,:26379",
        "REDIS_SENTINELS must be a comma-separated list of host:port (port 1-65535),"
        " got 'sentinel-1:26379,:26379'",
    ),
    (
        "REDIS_SENTINELS",
        "sentinel-1:0",
        "REDIS_SENTINELS must be a comma-separated list of host:port (port 1-65535),"
        " got 'sentinel-1:0'",
    ),
    (
        "REDIS_SENTINEL_SERVICE",
        "my primary",
        "REDIS_SENTINEL_SERVICE must be 1-128 printable characters without spaces,"
        " got 'my primary'",
    ),
    (
        "REDIS_WAIT_REPLICAS",
        "-1",
        "REDIS_WAIT_REPLICAS must be a whole number of replicas >= 0, got '-1'",
    ),
    ("RELOAD", "maybe", "RELOAD must be true or false, got 'maybe'"),
    ("OTEL_SDK_DISABLED", "perhaps", "OTEL_SDK_DISABLED must be true or false, got 'perhaps'"),
    (
        "OTEL_TRACES_SAMPLER",
        "sometimes",
        "OTEL_TRACES_SAMPLER must be one of always_on, always_off, traceidratio, "
        "parentbased_always_on, parentbased_always_off, parentbased_traceidratio, "
        "got 'sometimes'",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "10%",
        "OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got '10%'",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "2",
        "OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got '2'",
    ),
    (
        "GRAFANA_URL",
        "grafana:3000",
        "GRAFANA_URL must be an http:// or https:// URL, got 'grafana:3000'",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "tempo:4318",
        "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, got 'tempo:4318'",
    ),
]
