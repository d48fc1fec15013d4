#!/bin/sh
# Makes the stack's secrets on first start, into the `secrets` volume: a random
# password per Redis user (never a default one) and the Redis ACL file with their
# SHA-256 hashes. Existing passwords are kept; the ACL file is rewritten each start.
# The HA topology's (compose.ha.yaml) secrets are made too: replicas and Sentinels
# read them only when that topology runs.
set -eu
cd /secrets
umask 077

# Rotation (ops/rotate_secrets.py, `make rotate-secrets`): `rotate` keeps each Redis user's
# password as NAME.old and writes a new NAME (write, then rename), `rotate-finish` drops the
# .old ones; both then fall through to write every file below again. While a NAME.old exists
# the ACL file and the Sentinels' users accept both passwords, and every client's file
# (masterauth, auth-pass, the exporter's map) holds the new one. A rotation cut short
# resumes: a user that has a NAME.old keeps the new NAME it already has.
ROTATED="redis_app_password redis_exporter_password redis_replication_password redis_sentinel_password redis_backup_password"
case "${1:-}" in
rotate)
  for name in $ROTATED; do
    [ -e "$name.old" ] && continue
    cp -p "$name" "$name.old"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$name.tmp"
    # Its reader's ownership before the rename: a replica starting now reads either file.
    chown --reference="$name.old" "$name.tmp"
    chmod 0400 "$name.tmp"
    mv "$name.tmp" "$name"
  done
  shift
  ;;
rotate-finish)
  for name in $ROTATED; do rm -f "$name.old"; done
  shift
  ;;
esac

# `docker compose run --rm -T secrets NAME <file` stores one of Alertmanager's receiver
# secrets (README "Alerts"), owned by Alertmanager's user; an empty file turns it off.
if [ "$#" -gt 0 ]; then
  case "$1" in
    alertmanager_webhook_url | alertmanager_slack_api_url | alertmanager_smtp_password) ;;
    *)
      echo "secrets: '$1' is not a receiver secret" >&2
      exit 64
      ;;
  esac
  cat >"$1.new"
  chmod 0400 "$1.new"
  chown 65534:65534 "$1.new" # Alertmanager's user (nobody)
  mv "$1.new" "$1"
  echo "secrets: $1 written; docker compose restart alertmanager to apply"
  exit 0
fi

make_password() {
  [ -s "$1" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"
}
sha256() {
  printf '%s' "$(cat "$1")" | sha256sum | cut -d' ' -f1
}
# The ACL passwords of a user: its password's hash, and the previous one's mid-rotation.
hashes() {
  printf '#%s' "$(sha256 "$1")"
  if [ -e "$1.old" ]; then printf ' #%s' "$(sha256 "$1.old")"; fi
}

make_password redis_app_password
make_password redis_exporter_password
make_password grafana_admin_password
make_password redis_replication_password
make_password redis_sentinel_password
make_password redis_backup_password
# redis_exporter reads its password from a JSON map keyed by the full URI, user included:
# one entry per target Prometheus asks it to scrape (ops/prometheus/targets/), that is
# every Redis node and Sentinel of the topology (compose.ha.yaml sets both lists).
{
  sep='{'
  for target in $(echo "${REDIS_NODES:-redis}" | tr ' ' '\n' | sed 's/$/:6379/') \
    $(echo "${REDIS_SENTINELS:-}" | tr ',' ' '); do
    printf '%s"redis://exporter@%s":"%s"' "$sep" "$target" "$(cat redis_exporter_password)"
    sep=,
  done
  echo '}'
} >redis_exporter.json

key=${COUNTER_KEY:-visitor_count}
{
  # Off: no client can log in as default. Its permissions still matter: Redis checks
  # them when it replays MULTI/EXEC (our script's effects) from the AOF at start.
  echo "user default off resetpass ~* &* +@all"
  # The app: its counter and idempotency records, and only the commands it sends.
  echo "user app on $(hashes redis_app_password) resetkeys ~${key} ~${key}:request:* resetchannels -@all +ping +get +set +incr +evalsha +script|load +wait +client|setname +client|setinfo +select"
  # A replica syncing from the primary (masteruser in redis_replication.conf).
  echo "user replication on $(hashes redis_replication_password) resetkeys resetchannels -@all +ping +psync +sync +replconf"
  # The backup service (ops/backup/): a point-in-time snapshot over SYNC, nothing else.
  echo "user backup on $(hashes redis_backup_password) resetkeys resetchannels -@all +ping +sync +replconf"
  # Sentinel: monitors, announces itself on its hello channel, and reconfigures on failover.
  echo "user sentinel on $(hashes redis_sentinel_password) resetkeys allchannels -@all +ping +info +role +multi +exec +slaveof +replicaof +config|rewrite +client|setname +client|kill +publish +subscribe +script|kill +acl|load +config|set"
  # redis_exporter: server statistics, read-only.
  echo "user exporter on $(hashes redis_exporter_password) resetkeys resetchannels -@all +ping +info +config|get +client|list +client|setname +client|setinfo +slowlog|get +slowlog|len +latency|latest +dbsize +select +memory|stats +cluster|info +module|list +latency|histogram"
} >redis_users.acl.new
mv redis_users.acl.new redis_users.acl

# Each Redis node of the HA topology includes this: how a replica logs in to its primary.
printf 'masteruser replication\nmasterauth %s\n' "$(cat redis_replication_password)" \
  >redis_replication.conf

# Sentinel keeps its users and passwords in its own config (it has no ACL file); each
# Sentinel adds these lines to ops/redis/sentinel.conf on first start. The monitored
# primary's name comes from that file, its one source.
service=$(awk '$1 == "sentinel" && $2 == "monitor" { print $3 }' /ops/redis/sentinel.conf)
{
  echo "sentinel auth-user ${service} sentinel"
  echo "sentinel auth-pass ${service} $(cat redis_sentinel_password)"
  # Sentinels log in to each other as user sentinel too.
  echo "sentinel sentinel-user sentinel"
  echo "sentinel sentinel-pass $(cat redis_sentinel_password)"
  echo "user default off"
  echo "user sentinel on $(hashes redis_sentinel_password) allchannels +@all"
  # redis_exporter: Sentinel's view of the primary, its replicas and its peers.
  echo "user exporter on $(hashes redis_exporter_password) resetchannels -@all +ping +info +sentinel|masters +sentinel|master +sentinel|slaves +sentinel|replicas +sentinel|sentinels +sentinel|ckquorum +client|setname +client|setinfo"
  # The app only asks where the primary is.
  echo "user app on $(hashes redis_app_password) resetchannels -@all +ping +sentinel|masters +sentinel|slaves +sentinel|replicas +sentinel|get-master-addr-by-name +client|setname +client|setinfo"
} >sentinel_auth.conf.new
mv sentinel_auth.conf.new sentinel_auth.conf

# Each secret readable by the one user that needs it, nobody else.
# The exporter's and the backup's plain passwords stay root's: only the hash and the JSON
# leave here; the backup service reads its own as root, then drops to its folder's owner.
chmod 0400 redis_users.acl redis_app_password redis_exporter_password redis_exporter.json \
  grafana_admin_password redis_replication_password redis_sentinel_password \
  redis_replication.conf sentinel_auth.conf redis_backup_password
chown redis:redis redis_users.acl redis_replication.conf sentinel_auth.conf redis_sentinel_password
chown 10001:10001 redis_app_password   # the app image's user
chown 59000:59000 redis_exporter.json  # redis_exporter's user
chown 472:0 grafana_admin_password     # grafana's user
echo "secrets: ready"
