"""Forwards 127.0.0.1:PORT inside each named network namespace to 127.0.0.1:PORT here.

The cluster tier's registry listens on this machine's loopback, where the machine's own
Docker engine pushes to it as `localhost:PORT` (loopback registries need no TLS). Each
node's engine pulls the same name, `localhost:PORT/...`, which inside its namespace is
its own loopback: this process listens there (a socket made after entering the
namespace stays in it) and carries each connection back to the registry.

    python3 tests/cluster/forward.py PORT NETNS [NETNS ...]
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
CHUNK = 65536


def enter(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def listener(netns: str, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port inside `netns`; the caller stays where it was
    (called before the event loop starts, while this process has one thread)."""
    home_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        enter(f"/run/netns/{netns}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.setblocking(False)
    finally:
        enter(f"/proc/self/fd/{home_fd}")
        os.close(home_fd)
    return sock


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(port: int, namespaces: list[str]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    servers = [
        await asyncio.start_server(handle, sock=listener(netns, port)) for netns in namespaces
    ]
    print("forwarding", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2:]))
