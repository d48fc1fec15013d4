#!/bin/sh
# Starts a node of the HA topology (compose.ha.yaml) where the current primary is.
#   ha.sh node [redis-server options]  a Redis node: the primary, or a replica of it
#   ha.sh sentinel                     a Sentinel watching the current primary
# Env: REDIS_NODES (names), REDIS_SENTINELS (host:port,..., the app's setting).
# Everything is addressed by IP: Docker's DNS on an internal network never answers for
# a stopped container, and Redis and Sentinel resolve names in their event loop, so a
# dead node's name would stall them for seconds (Sentinel then stops acting: TILT).
# A restarted container may get a new IP, so each start asks where the primary is now.
set -eu
conf_dir=/usr/local/etc/redis
# The primary's name and the first primary: sentinel.conf is their one source.
monitor=$(awk '$1 == "sentinel" && $2 == "monitor" { print $3, $4 }' "$conf_dir/sentinel.conf")
service=${monitor% *}
first=${monitor#* }
REDISCLI_AUTH=$(cat /run/secrets/redis_sentinel_password)
export REDISCLI_AUTH

cli() { timeout 2 redis-cli --user sentinel --no-auth-warning "$@" 2>/dev/null; }
ip_of() { getent ahostsv4 "$1" | awk 'NR == 1 { print $1 }'; }

# The primary the Sentinels name (they agree once a failover is over).
from_sentinels() {
  for sentinel in $(echo "$REDIS_SENTINELS" | tr ',' ' '); do
    addr=$(cli -h "${sentinel%:*}" -p "${sentinel##*:}" sentinel get-master-addr-by-name "$service" | head -1) || true
    if [ -n "$addr" ]; then echo "$addr"; return; fi
  done
}

# No Sentinel answers (first start, or all restarted): the node that says it is a
# primary and has the most replicas; on the very first start, the first primary. (On
# Swarm a node's name resolves only once it is healthy, except to the node itself:
# its hostname is its name, in /etc/hosts.)
from_nodes() {
  best=$(ip_of "$first") most=-1
  for node in $REDIS_NODES; do
    info=$(cli -h "$node" info replication) || continue
    echo "$info" | grep -q '^role:master' || continue
    replicas=$(echo "$info" | awk -F: '/^connected_slaves:/ { print $2 + 0 }')
    if [ "$replicas" -gt "$most" ]; then best=$(ip_of "$node") most=$replicas; fi
  done
  echo "$best"
}

# Whether a node other than this one answers as a replica.
other_replica() {
  for node in $REDIS_NODES; do
    [ "$(ip_of "$node")" != "$me" ] || continue
    cli -h "$node" info replication | grep -q '^role:slave' && return 0
  done
  return 1
}

case ${1:-} in
sentinel)
  primary=$(from_nodes)
  [ -n "$primary" ] || { echo "ha.sh: no primary found" >&2; exit 1; }
  unset REDISCLI_AUTH
  umask 077
  # The same id at every start, from the Sentinel's name: one back on a new address (a
  # new Swarm task) replaces its old entry in the others' tables (+sentinel-address-switch).
  # A new id each start left the old entry behind as a Sentinel that is down, raising the
  # majority a failover needs: after one host's restart, losing another stopped failovers.
  myid=$(sha1sum </etc/hostname | cut -c1-40)
  sed "s/^sentinel monitor $service $first /sentinel monitor $service $primary /" \
    "$conf_dir/sentinel.conf" | cat - /run/secrets/sentinel_auth.conf >/tmp/sentinel.conf
  echo "sentinel myid $myid" >>/tmp/sentinel.conf
  exec redis-sentinel /tmp/sentinel.conf
  ;;
node)
  shift
  me=$(ip_of "$(cat /etc/hostname)")
  # During a failover the Sentinels still name the primary that is gone: wait (at
  # most 60 s) until the one they name answers, then follow it. When they name this
  # node (the primary, restarted on its old address, as Swarm may give it) and another
  # node is still a replica, wait for their failover too: starting as the primary again
  # would have the replicas resync from this node's older files, dropping writes they
  # acknowledged. With no other node up, this one is the primary (a cold start).
  primary=
  for _ in $(seq 60); do
    primary=$(from_sentinels)
    if [ "$primary" = "$me" ] && ! other_replica; then break; fi
    if [ -z "$primary" ] || { [ "$primary" != "$me" ] && cli -h "$primary" ping | grep -q PONG; }; then
      break
    fi
    sleep 1
  done
  [ -n "$primary" ] || primary=$(from_nodes)
  [ -n "$primary" ] || { echo "ha.sh: no primary found" >&2; exit 1; }
  if [ "$primary" != "$me" ]; then set -- --replicaof "$primary" 6379 "$@"; fi
  # Redis needs only its own files; the Sentinel password stays out of its environment.
  unset REDISCLI_AUTH
  exec docker-entrypoint.sh redis-server "$conf_dir/ha.conf" "$@"
  ;;
esac
echo "usage: ha.sh node [redis-server options] | ha.sh sentinel" >&2
exit 64
