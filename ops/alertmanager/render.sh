#!/bin/sh
# Writes Alertmanager's config from the shipped one (routes, inhibitions, receivers with
# no integration) plus one integration per non-empty secret file, then starts it.
# Alertmanager reads a *_file when it sends, not when it loads, so a file referenced but
# absent would fail every notification: a receiver's integration exists only with its file.
set -eu
SECRETS=${SECRETS:-/run/secrets}
SHIPPED=${SHIPPED:-/etc/alertmanager/alertmanager.yml}
CONFIG=${CONFIG:-/tmp/alertmanager.yml}

# A receiver is on when its file holds more than blanks: a Swarm secret cannot be empty,
# so there "off" is a lone newline (ops/swarm/secrets.py); on compose, an empty file.
on() { grep -q '[^[:space:]]' "$1" 2>/dev/null; }

integrations=$(mktemp)
if on "$SECRETS/alertmanager_webhook_url"; then
  cat >>"$integrations" <<YAML
    webhook_configs:
      - url_file: $SECRETS/alertmanager_webhook_url
        send_resolved: true
YAML
  echo "alertmanager: webhook on"
fi
if on "$SECRETS/alertmanager_slack_api_url"; then
  cat >>"$integrations" <<YAML
    slack_configs:
      - api_url_file: $SECRETS/alertmanager_slack_api_url
        send_resolved: true
        title: '[{{ .CommonLabels.severity }}] {{ .CommonAnnotations.summary }}'
        text: '{{ range .Alerts }}{{ .Annotations.description }} {{ .Annotations.runbook_url }}{{ "\n" }}{{ end }}'
YAML
  echo "alertmanager: slack on"
fi
if on "$SECRETS/alertmanager_smtp_password"; then
  for variable in ALERTMANAGER_EMAIL_TO ALERTMANAGER_SMTP_SMARTHOST; do
    eval "value=\${$variable:-}"
    if [ -z "$value" ]; then
      echo "alertmanager: configuration error: $variable must be set for email" >&2
      exit 78
    fi
  done
  cat >>"$integrations" <<YAML
    email_configs:
      - to: '$ALERTMANAGER_EMAIL_TO'
        from: '${ALERTMANAGER_EMAIL_FROM:-$ALERTMANAGER_EMAIL_TO}'
        smarthost: '$ALERTMANAGER_SMTP_SMARTHOST'
        auth_username: '${ALERTMANAGER_SMTP_USERNAME:-$ALERTMANAGER_EMAIL_TO}'
        auth_password_file: $SECRETS/alertmanager_smtp_password
        send_resolved: true
YAML
  echo "alertmanager: email on"
fi
[ -s "$integrations" ] || echo "alertmanager: no receiver configured, alerts stay in the UI"

# Every receiver gets the integrations: the route (page or ticket) sets how soon and how
# often, and each message carries its severity.
sed "/^  - name: /r $integrations" "$SHIPPED" >"$CONFIG"
rm -f "$integrations"
exec /bin/alertmanager --config.file="$CONFIG" "$@"
