"""make nginx-reload's script in the pinned nginx image: a bad config is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import ROOT, run


def test_nginx_reload_keeps_the_running_config_when_the_new_one_fails_nginx_t(
    tmp_path: Path,
) -> None:
    """ops/nginx/reload.sh (make nginx-reload) in the nginx image: a template that fails
    `nginx -t` is refused with exit 1, and the rendered config stays as it was."""
    nginx = ROOT / "ops" / "nginx"
    templates = tmp_path / "templates"
    shutil.copytree(nginx / "templates", templates)
    script = (
        "/docker-entrypoint.d/20-envsubst-on-templates.sh >/dev/null"
        " && cp /etc/nginx/conf.d/tally.conf /tmp/running"
        " && echo 'not_a_directive on;' >>/etc/nginx/templates/tally.conf.template"
        " && { sh /reload.sh; echo exit=$?; }"
        " && cmp /tmp/running /etc/nginx/conf.d/tally.conf && echo kept"
    )
    result = run(
        "docker", "run", "--rm", "--tmpfs", "/etc/nginx/conf.d",
        "-v", f"{templates}:/etc/nginx/templates",
        "-v", f"{nginx / 'snippets'}:/etc/nginx/snippets:ro",
        "-v", f"{nginx / 'reload.sh'}:/reload.sh:ro",
        "-e", "NGINX_RATE_LIMIT=100r/s", "-e", "NGINX_RATE_BURST=200",
        "nginx:1.30", "sh", "-c", script,
    )  # fmt: skip
    assert result.stdout.split() == ["exit=1", "kept"], result.stdout + result.stderr
    assert "nginx keeps the one it runs" in result.stderr
