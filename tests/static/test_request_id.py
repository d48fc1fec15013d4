"""The places outside Python that carry the request-id contract agree with service/request_id.py."""

from __future__ import annotations

import re
import secrets

from ops.configuration import NGINX_TEMPLATE
from service.request_id import (
    ACCEPTED,
    GENERATED_ID_TTL,
    HEADER,
    IDEMPOTENCY_HEADER,
    record_key,
)
from tests.support import ROOT

NGINX = NGINX_TEMPLATE.read_text()
INIT = (ROOT / "ops" / "secrets" / "init.sh").read_text()


def nginx_variable(header: str) -> str:
    return "$http_" + header.lower().replace("-", "_")


def test_nginx_maps_the_idempotency_header_to_the_id_it_sends_upstream_as_the_request_id() -> None:
    mapped = re.search(rf"map {re.escape(nginx_variable(IDEMPOTENCY_HEADER))} \$(\w+) \{{", NGINX)
    assert mapped, f"no map from {IDEMPOTENCY_HEADER} in the nginx template"
    assert f"proxy_set_header {HEADER} ${mapped.group(1)};" in NGINX


def test_nginx_own_request_ids_are_accepted() -> None:
    # nginx's $request_id: 32 hex characters.
    assert ACCEPTED.fullmatch(secrets.token_hex(16).encode())


def test_the_app_acl_user_may_touch_exactly_the_counter_and_its_records() -> None:
    app_user = next(line for line in INIT.splitlines() if 'echo "user app ' in line)
    patterns = re.findall(r" ~(\S+)", app_user)
    assert patterns == ["${key}", record_key("${key}", "*")]


def test_nginx_passes_the_clients_idempotency_key_upstream_as_it_came() -> None:
    assert f"proxy_set_header {IDEMPOTENCY_HEADER} {nginx_variable(IDEMPOTENCY_HEADER)};" in NGINX


def test_an_id_nginx_made_is_kept_exactly_as_long_as_nginx_may_retry_its_request() -> None:
    def seconds(directive: str) -> int:
        [value] = re.findall(rf"^\s*{directive} (\d+)s;", NGINX, re.MULTILINE)
        return int(value)

    retried_until = seconds("proxy_next_upstream_timeout")
    last_try = seconds("proxy_connect_timeout") + seconds("proxy_read_timeout")
    assert retried_until + last_try == GENERATED_ID_TTL
