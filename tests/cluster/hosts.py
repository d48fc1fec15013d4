"""Docker hosts on this machine for the cluster tier: namespaces, engines, a registry, a swarm.

Each host is a network namespace with an address of its own on a bridge that lives in a
namespace of its own (the hub), and one dockerd in it with its own data root, exec root,
pidfile, cgroup parent and hostname (../shared/sandbox/README.md, "Several Docker hosts
on one machine"). The nodes have no default route: a task that tried Docker Hub would
wait out a DNS timeout. Images come from a registry on this machine's loopback, which
this machine's engine pushes to as `localhost:PORT` and each node pulls as the same name
through tests/cluster/forward.py; redis and nginx are copied in with `docker save | load`.

Everything a run makes carries its run id (/run/tally-cluster-<id>, namespaces tcl<id>-*,
cgroups /tally-cluster-<id>-*) and is removed by process id and path on success, failure
and interrupt. A run that finds another's leftovers removes them and refuses to start.
The machine's own engine is only read (`docker save`) and pushed from (`make push`).

    python3 -m tests.cluster.hosts hold 1   # one host until SIGINT/SIGTERM (the tier's test)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from stack_client import free_port
from tests.support import run, wait_until

RUN_PREFIX = "tally-cluster-"
RUN_BASE = Path("/run")
NETNS_PREFIX = "tcl"
NETNS_DIR = Path("/run/netns")
CGROUPS = Path("/sys/fs/cgroup")
# The cgroup v1 hierarchies `ip netns exec` hides by remounting /sys (the sandbox README).
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
SUBNET = "10.231.0"
ENGINE_START = 60.0
RUN_SIZE = "8g"
ENGINE_STOP = 30.0
FORWARD = Path(__file__).with_name("forward.py")
SHIM_SOCKETS = Path("/run/containerd/s")


def netns_exec(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", netns, *args, check=check)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def kill(pids: set[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def processes_of(run_dir: Path) -> set[int]:
    """Processes this run started: dockerd, its containerd and shims name the run's folder
    on their command lines; the registry and the forwarder wrote pidfiles there; container
    processes sit in the run's cgroups."""
    mine: set[int] = set()
    marker = str(run_dir).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes():
                    mine.add(int(proc.name))
    for pidfile in run_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            mine.add(int(pidfile.read_text().strip()))
    for folder in cgroups_of(run_dir.name):
        mine |= cgroup_processes(folder)
    mine.discard(os.getpid())
    return {pid for pid in mine if alive(pid)}


def cgroup_processes(folder: Path) -> set[int]:
    """The processes in a cgroup and below it (folders come and go while it is read)."""
    pids: set[int] = set()
    for parent, _, files in os.walk(folder):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(pid) for pid in (Path(parent) / "cgroup.procs").read_text().split()}
    return pids


def cgroup_folders(folder: Path) -> list[Path]:
    """A cgroup's folders, deepest first (the order rmdir needs)."""
    found = [Path(parent) for parent, _, _ in os.walk(folder)]
    return sorted(found, key=lambda p: -len(p.parts))


def cgroups_of(run_name: str) -> list[Path]:
    return sorted(CGROUPS.glob(f"*/{run_name}-*"))


def leftovers() -> list[str]:
    """What earlier runs left: folders, namespaces, cgroups, processes."""
    found = [str(path) for path in RUN_BASE.glob(f"{RUN_PREFIX}*")]
    if NETNS_DIR.exists():
        found += [str(path) for path in NETNS_DIR.glob(f"{NETNS_PREFIX}*")]
    found += [str(path) for path in CGROUPS.glob(f"*/{RUN_PREFIX}*")]
    marker = f"{RUN_BASE}/{RUN_PREFIX}".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes():
                    found.append(f"pid {proc.name}")
    return found


def remove_all(run_dir: Path, graceful: bool) -> None:
    """Stop and remove everything of one run, by process id and by path."""
    if graceful:
        for pidfile in run_dir.glob("*/docker.pid"):
            with contextlib.suppress(OSError, ValueError):
                kill({int(pidfile.read_text().strip())}, signal.SIGTERM)
        deadline = time.monotonic() + ENGINE_STOP
        while time.monotonic() < deadline and any(
            "dockerd" in p for p in (cmdline(pid) for pid in processes_of(run_dir))
        ):
            time.sleep(0.2)
    # Anything still running, killed until nothing is left (a shim can outlive its parent).
    for _ in range(50):
        pids = processes_of(run_dir)
        if not pids:
            break
        kill(pids)
        time.sleep(0.1)
    for folder in cgroups_of(run_dir.name):
        for child in cgroup_folders(folder):
            with contextlib.suppress(OSError):
                child.rmdir()
    run_id = run_dir.name.removeprefix(RUN_PREFIX)
    if NETNS_DIR.exists():
        for netns in NETNS_DIR.glob(f"{NETNS_PREFIX}{run_id}-*"):
            run("ip", "netns", "delete", netns.name, check=False)
    remove_shim_sockets(run_dir)
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target == str(run_dir) or target.startswith(f"{run_dir}/"):
            run("umount", "-l", target, check=False)
    run("rm", "-rf", "--one-file-system", str(run_dir), check=False)


def remove_shim_sockets(run_dir: Path) -> None:
    """The sockets a hard-killed node's containerd shims leave in /run/containerd/s: each is
    named by a hash of its containerd's address, namespace and container id (containerd's
    shim.SocketAddress), so this run's are known exactly and no other engine's are touched."""
    for home in run_dir.glob("node*"):
        address = home / "exec" / "containerd" / "containerd.sock"
        for container in (home / "data" / "containers").glob("*"):
            digest = hashlib.sha256(f"{address}/moby/{container.name}".encode()).hexdigest()
            (SHIM_SOCKETS / digest).unlink(missing_ok=True)


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def clean_leftovers() -> list[str]:
    """Remove what earlier runs left and say what it was."""
    found = leftovers()
    for run_dir in RUN_BASE.glob(f"{RUN_PREFIX}*"):
        remove_all(run_dir, graceful=False)
    # Namespaces or cgroups whose run folder is already gone.
    if NETNS_DIR.exists():
        for netns in NETNS_DIR.glob(f"{NETNS_PREFIX}*"):
            run("ip", "netns", "delete", netns.name, check=False)
    for top in CGROUPS.glob(f"*/{RUN_PREFIX}*"):
        for folder in cgroup_folders(top):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return found


@dataclass
class Host:
    """One Docker host: a namespace with an address and an engine."""

    index: int
    run_dir: Path
    run_id: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.run_id}-n{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{10 + self.index}"

    @property
    def hub_link(self) -> str:
        """The hub's end of this host's cable: down is the host cut off."""
        return f"tcl{self.run_id[:4]}{self.index}a"

    @property
    def home(self) -> Path:
        return self.run_dir / self.name

    @property
    def docker_host(self) -> str:
        return f"unix://{self.run_dir}/{self.name}.sock"

    @property
    def cgroup(self) -> str:
        return f"{RUN_PREFIX}{self.run_id}-{self.name}"

    def docker(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run("docker", "-H", self.docker_host, *args, check=check, timeout=timeout)

    def answers(self) -> bool:
        answer = self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10)
        return answer.returncode == 0

    def start_engine(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        mounts = " && ".join(
            f"mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}"
            for c in CONTROLLERS
        )
        script = (
            f"hostname {self.name} && mount -t tmpfs cgroup /sys/fs/cgroup && {mounts}"
            " && mkdir -p /sys/fs/cgroup/systemd"
            " && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd"
            f" && exec dockerd -H {self.docker_host} --data-root {self.home}/data"
            f" --exec-root {self.home}/exec --pidfile {self.home}/docker.pid"
            f" --cgroup-parent /{self.cgroup} --swarm-default-advertise-addr {self.address}"
            " --log-level warn"
        )
        log = (self.home / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", script],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            # Not DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: with it a node never pulls, and the app
            # image comes from the registry. A pull of redis or nginx fails at once (no route
            # out) and the node runs its loaded copy.
        )  # fmt: skip
        wait_until(self.answers, ENGINE_START, f"{self.name}'s engine", interval=0.2)

    def engine_processes(self) -> set[int]:
        """dockerd, its containerd and shims, and every container process of this host."""
        marker = f"{self.home}/".encode()
        pids = set()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (proc / "cmdline").read_bytes():
                        pids.add(int(proc.name))
        for folder in CGROUPS.glob(f"*/{self.cgroup}"):
            pids |= cgroup_processes(folder)
        return {pid for pid in pids if alive(pid)}

    def kill_engine(self) -> None:
        """The engine and every container on it, gone at once (SIGKILL), as a power cut."""
        for _ in range(50):
            pids = self.engine_processes()
            if not pids:
                break
            kill(pids)
            time.sleep(0.05)
        if self.process is not None:
            self.process.wait(timeout=10)
            self.process = None
        for pidfile in self.home.glob("**/*.pid"):
            pidfile.unlink(missing_ok=True)

    def cut(self) -> None:
        run("ip", "-n", self.hub_netns, "link", "set", self.hub_link, "down")

    def reconnect(self) -> None:
        run("ip", "-n", self.hub_netns, "link", "set", self.hub_link, "up")

    @property
    def hub_netns(self) -> str:
        return f"{NETNS_PREFIX}{self.run_id}-hub"


@dataclass
class Cluster:
    """N hosts, a registry every one of them reaches, and (with `swarm()`) a swarm."""

    size: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: list[Host] = field(default_factory=list)
    registry_port: int = 0

    def __post_init__(self) -> None:
        self.run_dir = RUN_BASE / f"{RUN_PREFIX}{self.run_id}"
        self.hosts = [Host(i, self.run_dir, self.run_id) for i in range(1, self.size + 1)]
        self.hub = f"{NETNS_PREFIX}{self.run_id}-hub"

    @property
    def registry(self) -> str:
        """The name every engine here pushes to and pulls from."""
        return f"localhost:{self.registry_port}"

    def start(self, images: tuple[str, ...] = ()) -> None:
        found = leftovers()
        if found:
            clean_leftovers()
            raise RuntimeError(
                "leftovers of an earlier cluster run were found and removed; run again: "
                + ", ".join(found[:10])
            )
        # A tmpfs of its own: the engines' images and layers, gone at once when it is unmounted
        # (deleting them from this machine's busy disk took minutes).
        self.run_dir.mkdir(mode=0o700)
        run(
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={RUN_SIZE},mode=0700",
            "tally-cluster",
            str(self.run_dir),
        )
        self.network()
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(lambda host: host.start_engine(), self.hosts))
        self.start_registry()
        if images:
            self.load(images)

    def network(self) -> None:
        bridge = "tclbr"
        run("ip", "netns", "add", self.hub)
        run("ip", "-n", self.hub, "link", "set", "lo", "up")
        run("ip", "-n", self.hub, "link", "add", bridge, "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", bridge, "up")
        # This namespace's own cable to the bridge, for the tests' clients: traffic it sends
        # and receives is local here (not forwarded), so Docker's FORWARD rules never see it.
        here, there = f"tcl{self.run_id[:4]}r", f"tcl{self.run_id[:4]}h"
        run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        run("ip", "link", "set", there, "netns", self.hub)
        run("ip", "-n", self.hub, "link", "set", there, "master", bridge, "up")
        run("ip", "addr", "add", f"{SUBNET}.1/24", "dev", here)
        run("ip", "link", "set", here, "up")
        for host in self.hosts:
            node_end = f"tcl{self.run_id[:4]}{host.index}b"
            run("ip", "netns", "add", host.netns)
            run("ip", "link", "add", host.hub_link, "type", "veth", "peer", "name", node_end)
            run("ip", "link", "set", host.hub_link, "netns", self.hub)
            run("ip", "link", "set", node_end, "netns", host.netns)
            run("ip", "-n", self.hub, "link", "set", host.hub_link, "master", bridge, "up")
            run("ip", "-n", host.netns, "link", "set", node_end, "name", "eth0")
            run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            run("ip", "-n", host.netns, "link", "set", "eth0", "up")
            run("ip", "-n", host.netns, "link", "set", "lo", "up")

    def start_registry(self) -> None:
        """registry:2's own binary, run from the image's files on this machine's loopback,
        and a forwarder to it on each node's loopback."""
        rootfs = self.run_dir / "registry"
        rootfs.mkdir()
        archive = self.run_dir / "registry.tar"
        run("docker", "save", "-o", str(archive), "registry:2")
        with tarfile.open(archive) as image:
            manifest = image.extractfile("manifest.json")
            assert manifest is not None
            layers = json.loads(manifest.read())[0]["Layers"]
            for layer in layers:
                blob = image.extractfile(layer)
                assert blob is not None
                with tarfile.open(fileobj=blob) as files:
                    files.extractall(rootfs, filter="tar")
        archive.unlink()
        self.registry_port = free_port()
        log = (self.run_dir / "registry.log").open("ab")
        registry = subprocess.Popen(
            [shutil.which("chroot") or "chroot", str(rootfs),
             "/bin/registry", "serve", "/etc/docker/registry/config.yml"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            env={"REGISTRY_HTTP_ADDR": f"127.0.0.1:{self.registry_port}"},
        )  # fmt: skip
        (self.run_dir / "registry.pid").write_text(str(registry.pid))
        forwarder = subprocess.Popen(
            [sys.executable, str(FORWARD), str(self.registry_port),
             *(host.netns for host in self.hosts)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        (self.run_dir / "forward.pid").write_text(str(forwarder.pid))
        assert forwarder.stdout is not None
        assert forwarder.stdout.readline().strip() == b"forwarding"
        wait_until(self.registry_answers, 30, "the registry", interval=0.2)

    def registry_answers(self) -> bool:
        return httpx.get(f"http://127.0.0.1:{self.registry_port}/v2/", timeout=2).status_code == 200

    def load(self, images: tuple[str, ...]) -> None:
        """Images the registry does not hold, from this machine's engine into every node's."""
        archive = self.run_dir / "images.tar"
        run("docker", "save", "-o", str(archive), *images, timeout=600)
        with ThreadPoolExecutor(self.size) as pool:
            list(
                pool.map(
                    lambda h: h.docker("load", "-q", "-i", str(archive), timeout=600), self.hosts
                )
            )
        archive.unlink()

    def swarm(self) -> None:
        """A swarm of every host as a manager (three managers keep a quorum when one is lost),
        made as the README says, with Docker's default 5 s dispatcher heartbeat: a dead
        node is marked down in about 13 s. Not 1 s: a new leader gives the live nodes'
        agents six heartbeats to reconnect before it marks them down and replaces their
        tasks (their Redis nodes, Sentinels and nginx included), and on a busy machine an
        agent can take longer than 6 s after the leader's host is lost."""
        first = self.hosts[0]
        first.docker(
            "swarm", "init", "--advertise-addr", first.address,
            "--listen-addr", f"{first.address}:2377",
        )  # fmt: skip
        token = first.docker("swarm", "join-token", "-q", "manager").stdout.strip()
        for host in self.hosts[1:]:
            host.docker(
                "swarm", "join", "--token", token, "--advertise-addr", host.address,
                "--listen-addr", f"{host.address}:2377", f"{first.address}:2377",
            )  # fmt: skip

    def stop(self) -> None:
        try:
            remove_all(self.run_dir, graceful=True)
        finally:
            # Whatever the graceful pass left (it can fail half way), by force.
            remove_all(self.run_dir, graceful=False)

    @contextlib.contextmanager
    def running(self, images: tuple[str, ...] = ()) -> Iterator[Cluster]:
        """The cluster for a block; removed however the block ends, SIGTERM and SIGINT
        included. SIGINT gets its handler here too: a process started in the background
        of a shell without job control inherits SIGINT ignored, and Python then keeps it
        ignored, so Ctrl-C or `kill -INT` would leave the hosts behind."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, _interrupt)
        try:
            self.start(images)
            yield self
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    """`hold N`: N hosts and a registry until a signal, for the test of the cleanup."""
    if sys.argv[1:2] != ["hold"]:
        print(__doc__, file=sys.stderr)
        return 2
    cluster = Cluster(int(sys.argv[2]))
    stop = threading.Event()
    try:
        with cluster.running():
            print(f"ready {cluster.run_dir}", flush=True)
            stop.wait()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
