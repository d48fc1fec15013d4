# The container's health probe: exit 0 when GET /healthz on this replica answers 200.
#
# Docker runs it in every replica every few seconds, through an exec that by itself
# costs tens of ms of CPU (dockerd, containerd, runc). So the probe is bash and its
# /dev/tcp (4 ms more), not a Python interpreter (43 ms more): the 3 replicas' probes
# fire together, and on 2 cores under load that burst sets the p99 (docs/PERFORMANCE.md,
# "The open loop's tail").
#
# Run as `bash /app/service/healthcheck.sh`. PORT is the port the app was told to
# listen on; the default is Settings.port's (tests/unit/test_healthcheck.py checks it).
# A PORT that is not a port fails the connect: unhealthy, as the app refuses to start.

trap '' PIPE  # a server that answers before reading the whole request: read the answer
exec 3<>"/dev/tcp/127.0.0.1/${PORT:-8000}" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 5 status <&3 || exit 1
[[ $status =~ ^HTTP/1\.[01]\ 200\  ]]
