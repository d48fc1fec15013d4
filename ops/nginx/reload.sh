#!/bin/sh
# Runs inside the nginx container (`make nginx-reload` pipes it in): renders the templates
# again as the image's entrypoint did at start, checks the result with `nginx -t`, and only
# then reloads. A config that fails the check is put back as it was and nothing reloads.
# A reload starts new workers on the new config; the old ones finish what they hold.
set -eu
conf=/etc/nginx/conf.d
backup=$(mktemp -d)
cp -a "$conf/." "$backup/"
NGINX_ENTRYPOINT_QUIET_LOGS=1 /docker-entrypoint.d/20-envsubst-on-templates.sh
if ! nginx -t -q; then
  cp -a "$backup/." "$conf/"
  rm -rf "$backup"
  echo "nginx-reload: the new config fails nginx -t (above); nginx keeps the one it runs" >&2
  exit 1
fi
rm -rf "$backup"
nginx -s reload
echo "nginx-reload: config checked and reloaded"
