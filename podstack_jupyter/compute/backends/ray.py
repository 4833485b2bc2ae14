"""The ``ray`` backend: a GPU session is a Ray actor on a node that holds the GPUs, running a kernel there.

Configure it with ``PODSTACK_BACKEND=ray`` and ``PODSTACK_RAY_ADDRESS`` (``host:6379``,
``ray://host:10001`` or ``auto``), or ``podstack.init(backend="ray", ray_address=...)``; a notebook
that already called ``ray.init()`` uses that cluster. ``pip install "podstack-jupyter[ray]"``.
The cluster's Python needs ipykernel and cloudpickle (podstack itself is not needed there).

Placement (a placement group of one bundle, so that waiting for GPUs is apart from building
the environment):

* the GPU type is a node's Ray accelerator type: the custom resource ``accelerator_type:<T>``
  (what ``@ray.remote(accelerator_type=...)`` asks for; Ray adds it on real GPU nodes) or the node
  label ``ray.io/accelerator-type=<T>``. Ray detects an A100 as ``A100`` whatever its memory, so
  ``A100-40G`` and ``A100-80G`` need the cluster to say which a node has::

      ray start --resources='{"accelerator_type:A100-80G": 1}' ...   # or
      ray start --labels='ray.io/accelerator-type=A100-80G' ...

  (a fake cluster for tests declares its types the same way);
* ``--count N`` asks for ``num_gpus=N``; ``--fraction P`` for ``num_gpus=P/100`` of one device, so
  two 50% sessions share a GPU; no type: any free GPU, else a CPU-only session;
* a request no node could ever hold fails at once with ``GPUNotAvailableError`` listing the
  cluster's GPUs by node; one that could but is busy waits ``PODSTACK_RAY_PLACEMENT_TIMEOUT``
  seconds (60) and then fails the same way (Ray itself would wait forever).

Environments: ``--pip``, ``--requirements``, ``--env`` and conda become the actor's
``runtime_env`` (``pip``; ``conda`` with the kernel's own needs added), built by Ray on the node
with its build log shown in the cell. A ``--pip`` entry that is a local ``.whl`` file or folder
is uploaded to the cluster (``py_modules``), so it works on nodes that do not share the
notebook's disk.

The kernel's ports: the notebook connects to them directly when it can reach the node, else
(or with ``PODSTACK_RAY_CONNECT=tunnel``) the actor relays the kernel's messages; both carry
large buffers as binary frames, and when the node is this very machine large buffers are
copied between the processes' memory. A kernel that exits, an actor that dies, or a node that
stops answering (kernel heartbeat and actor both silent for :data:`SILENCE_LIMIT` seconds) ends
the cell with ``SessionDiedError`` within seconds. Sessions belong to the notebook's Ray job:
they stop when the notebook stops, even when it is killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from ... import config
from ...errors import EnvironmentBuildError, GPUNotAvailableError, SessionDiedError
from ..spec import GPU_TYPES, GPUSpec
from ._base import Allocation, Backend, Connection, Environment, Progress
from ._zmq import ZMQConnection

__all__ = ["RayBackend", "RayKernel", "RayRelayKernel", "runtime_env_for", "placement_request", "SILENCE_LIMIT"]

LABEL_KEYS = ("ray.io/accelerator-type", "podstack.io/gpu-type")
SILENCE_LIMIT = 8.0  # seconds without a heartbeat or an actor answer before a node counts as lost
_RELAY_SILENCE_LIMIT = 30.0  # through the actor only: its answers are the one sign of life
_START_LIMIT = 300.0  # seconds for the actor and its kernel to start, when no environment is built
_BUILD_LIMIT = 1800.0  # ... when Ray builds a runtime_env first (Ray gives up after 10 minutes itself)
_WATCH_INTERVAL = 1.0


def _ray():
    try:
        import ray
    except ImportError:
        from ...errors import ConfigurationError

        raise ConfigurationError('the ray backend needs Ray: pip install "podstack-jupyter[ray]"') from None
    return ray


def _connect():
    """Join the configured cluster once per process (or use the one this process already joined)."""
    ray = _ray()
    if not ray.is_initialized():
        address = config.settings().ray_address
        try:
            ray.init(address=address, ignore_reinit_error=True, logging_level="WARNING", log_to_driver=False)
        except ConnectionError as exc:
            from ...errors import ConfigurationError

            raise ConfigurationError(f"cannot join the Ray cluster at {address or 'the default address'}: {exc}. "
                                     f"Check PODSTACK_RAY_ADDRESS (e.g. head-node:6379 or ray://head-node:10001)") \
                from None
    return ray


# -- what the cluster has ------------------------------------------------------------------------
def node_gpu_types(node: dict) -> list[str]:
    """The podstack GPU types a node (an entry of ``ray.nodes()``) declares, most specific first."""
    found = []
    labels = node.get("Labels") or {}
    for key in reversed(LABEL_KEYS):
        if labels.get(key):
            found.append(labels[key])
    for resource in node.get("Resources") or {}:
        if resource.startswith("accelerator_type:"):
            found.append(resource.split(":", 1)[1])
    # a memory variant (A100-80G) says more than the bare family Ray detects (A100)
    found.sort(key=lambda t: (t not in GPU_TYPES, -len(t)))
    return list(dict.fromkeys(found))


def _alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _available_by_node(ray) -> dict[str, dict]:
    try:  # per node: not in Ray's public API without the dashboard
        from ray._private.state import available_resources_per_node

        return available_resources_per_node()
    except Exception:  # noqa: BLE001 - only the "in use" column is lost
        return {}


def cluster_gpus(ray) -> list[dict]:
    """One row per node that has GPUs: node, its type, how many, how many are in use."""
    available = _available_by_node(ray)
    rows = []
    for node in _alive_nodes(ray):
        total = float((node.get("Resources") or {}).get("GPU", 0))
        if total <= 0:
            continue
        types = node_gpu_types(node)
        # Ray leaves out a resource none of which is free: a node in the table without "GPU" has none free
        free = available.get(node["NodeID"], {}).get("GPU", 0.0) if available else None
        rows.append({"node": node.get("NodeManagerAddress"), "node_id": node["NodeID"],
                     "type": types[0] if types else None, "total": total,
                     "in_use": None if free is None else round(total - float(free), 2)})
    return rows


def describe_cluster(rows: list[dict]) -> str:
    if not rows:
        return "no GPUs (CPU only)"
    parts = []
    for row in rows:
        use = "" if row["in_use"] is None else f", {row['in_use']:g} in use"
        parts.append(f"{row['node']} ({row['node_id'][:8]}): {row['total']:g} x {row['type'] or 'GPU of no declared type'}"
                     f"{use}")
    return "; ".join(parts)


def placement_request(spec: GPUSpec, nodes: list[dict], free_gpus: float) -> dict:
    """The bundle for ``spec`` on a cluster of ``nodes`` (``ray.nodes()``): ``{"bundle": resources,
    "label_selector": {...} or None, "gpu_type": type or None, "num_gpus": n}``.

    Raises GPUNotAvailableError at once when no node could ever hold it.
    """
    wanted = spec.count * spec.fraction / 100
    if spec.type is None:
        gpus = wanted if free_gpus >= wanted else 0.0  # any free GPU, else the CPU
        return {"bundle": {"CPU": 1.0, **({"GPU": gpus} if gpus else {})}, "label_selector": None,
                "gpu_type": None, "num_gpus": gpus}
    by_resource = [n for n in nodes if f"accelerator_type:{spec.type}" in (n.get("Resources") or {})]
    by_label = [(n, key) for n in nodes for key in LABEL_KEYS if (n.get("Labels") or {}).get(key) == spec.type]
    if by_resource:
        request = {"bundle": {"CPU": 1.0, "GPU": wanted, f"accelerator_type:{spec.type}": 0.001},
                   "label_selector": None}
        candidates = by_resource
    elif by_label:
        key = by_label[0][1]
        request = {"bundle": {"CPU": 1.0, "GPU": wanted}, "label_selector": {key: spec.type}}
        candidates = [n for n, k in by_label if k == key]
    else:
        candidates = []
    fitting = [n for n in candidates if float((n.get("Resources") or {}).get("GPU", 0)) >= wanted
               and float((n.get("Resources") or {}).get("CPU", 0)) >= 1]
    if not fitting:
        rows = [r for r in (_row(n) for n in nodes) if r]
        what = f"{spec.count} x {spec.type}" + (f" at {spec.fraction}%" if spec.fraction < 100 else "")
        hint = ""
        if spec.type.startswith("A100") and any("A100" in (r["type"] or "") for r in rows):
            hint = (f" Ray detects an A100 as 'A100' whatever its memory: declare {spec.type} nodes with "
                    f"--resources='{{\"accelerator_type:{spec.type}\": 1}}' or "
                    f"--labels='ray.io/accelerator-type={spec.type}'.")
        elif candidates:
            hint = " No node has that many."
        raise GPUNotAvailableError(
            f"no node of the Ray cluster can hold {what}; it has: {describe_cluster(rows)}.{hint}",
            available=_summary(rows))
    request.update(gpu_type=spec.type, num_gpus=wanted)
    return request


def _row(node: dict) -> dict | None:
    total = float((node.get("Resources") or {}).get("GPU", 0))
    if total <= 0:
        return None
    types = node_gpu_types(node)
    return {"node": node.get("NodeManagerAddress"), "node_id": node["NodeID"], "type": types[0] if types else None,
            "total": total, "in_use": None}


def _summary(rows: list[dict]) -> dict:
    summary: dict[str, dict] = {}
    for row in rows:
        entry = summary.setdefault(row["type"] or "GPU", {"total": 0.0, "in_use": 0.0, "nodes": []})
        entry["total"] += row["total"]
        entry["in_use"] += row["in_use"] or 0.0
        entry["nodes"].append(row["node"])
    return summary


# -- environments ---------------------------------------------------------------------------------
def runtime_env_for(spec: GPUSpec) -> dict:
    """The Ray ``runtime_env`` for ``spec``'s packages (``{}`` when it needs none).

    Local wheel files and folders go to ``py_modules`` (uploaded to the cluster), every other
    requirement to ``pip``; conda packages make a ``conda`` environment, which is built from
    nothing, so the kernel's own needs (ipykernel, cloudpickle, this Ray) are added to it.
    """
    requirements = list(spec.packages)
    if spec.requirements:
        for line in Path(spec.requirements).read_text().splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                requirements.append(line)
    local = [r for r in requirements if _is_local_package(r)]
    index = [r for r in requirements if r not in local]
    env: dict = {}
    if spec.conda:
        import ray

        pip_part = [*index, "ipykernel", "cloudpickle", f"ray=={ray.__version__}"]
        env["conda"] = {"dependencies": [*spec.conda, "pip", {"pip": pip_part}]}
    elif index:
        env["pip"] = {"packages": index, "pip_check": False}
    if local:
        env["py_modules"] = [str(Path(r).expanduser().resolve()) for r in local]
    return env


def _is_local_package(requirement: str) -> bool:
    path = Path(requirement).expanduser()
    return (requirement.endswith(".whl") and path.is_file()) or (path.is_dir() and os.sep in requirement)


# -- the backend --------------------------------------------------------------------------------
class RayBackend(Backend):
    """Sessions as Ray actors on the cluster at ``PODSTACK_RAY_ADDRESS``."""

    name = "ray"

    def inventory(self) -> list[dict]:
        ray = _connect()
        rows = []
        for row in cluster_gpus(ray):
            total = row["total"]
            count = int(total) if float(total).is_integer() else total
            rows.append({"node": f"{row['node']} ({row['node_id'][:8]})", "index": f"0-{int(total) - 1}"
                         if total >= 2 else "0", "type": row["type"], "name": f"{count:g} x {row['type'] or 'GPU'}",
                         "used_percent": None if row["in_use"] is None else round(100 * row["in_use"] / total)})
        return rows

    def allocate(self, spec: GPUSpec) -> Allocation:
        ray = _connect()
        from ray.util.placement_group import placement_group, remove_placement_group

        free = float(ray.available_resources().get("GPU", 0))
        request = placement_request(spec, _alive_nodes(ray), free)
        options = {"bundle_label_selector": [request["label_selector"]]} if request["label_selector"] else {}
        group = placement_group([request["bundle"]], strategy="STRICT_PACK", **options)
        timeout = config.settings().ray_placement_timeout
        if not group.wait(min(2.0, timeout)):
            print(f"[podstack] waiting up to {timeout:g}s for {spec.describe()} on the Ray cluster", flush=True)
            if not group.wait(max(0.0, timeout - 2.0)):
                remove_placement_group(group)
                rows = cluster_gpus(ray)
                raise GPUNotAvailableError(
                    f"the Ray cluster could not place {spec.describe()} within {timeout:g}s "
                    f"(PODSTACK_RAY_PLACEMENT_TIMEOUT): its GPUs are in use. It has: {describe_cluster(rows)}. "
                    f"Stop a session with %gpu stop, wait, or ask for less.", available=_summary(rows))
        accelerator = {k: v for k, v in request["bundle"].items() if k.startswith("accelerator_type:")}
        return Allocation([], request["gpu_type"], spec.fraction if request["num_gpus"] else 100,
                          handle={"group": group, "num_gpus": request["num_gpus"], "resources": accelerator})

    def release(self, allocation: Allocation) -> None:
        group = (allocation.handle or {}).get("group")
        if group is None:
            return
        ray = _ray()
        if ray.is_initialized():
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - the cluster may be gone; nothing is held then
                pass

    def prepare(self, spec: GPUSpec, progress: Progress, *, rebuild: bool = False) -> Environment:
        runtime_env = runtime_env_for(spec)
        if not runtime_env:
            return Environment()
        key = hashlib.sha256(json.dumps(runtime_env, sort_keys=True).encode()).hexdigest()[:12]
        if "py_modules" in runtime_env:
            runtime_env = _upload_local_modules(runtime_env, progress)
        return Environment(name=f"ray-{key}", options={"runtime_env": runtime_env, "progress": progress})

    def start_kernel(self, spec: GPUSpec, allocation: Allocation, environment: Environment) -> Connection:
        ray = _connect()
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from . import _ray_host

        ray.cloudpickle.register_pickle_by_value(_ray_host)  # the node needs no podstack
        handle = allocation.handle
        num_gpus = handle["num_gpus"]
        runtime_env = environment.options.get("runtime_env")
        progress = environment.options.get("progress") or print
        host = _ray_host.KernelHost.options(
            num_cpus=1, num_gpus=num_gpus, resources=handle["resources"], max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(handle["group"], placement_group_bundle_index=0),
            runtime_env=runtime_env).remote()
        kernel_env = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        if not num_gpus:
            kernel_env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU session does not take the node's GPUs
        started = host.start.remote(kernel_env)
        try:
            info = self._wait_started(ray, started, handle["group"], runtime_env, progress)
        except BaseException:
            ray.kill(host, no_restart=True)
            raise
        allocation.gpus = [int(g) for g in info["gpu_ids"] if str(g).isdigit()]
        if allocation.gpu_type is None and allocation.gpus:
            node = next((n for n in _alive_nodes(ray) if n["NodeID"] == info["node_id"]), {})
            types = node_gpu_types(node)
            allocation.gpu_type = types[0] if types else "GPU"
        handle.update(node=info["node_ip"], node_id=info["node_id"])
        mode = config.settings().ray_connect
        if mode == "auto":
            mode = "direct" if _reachable(info["node_ip"], info["connection"]["shell_port"]) else "tunnel"
        kernel_cls = RayKernel if mode == "direct" else RayRelayKernel
        kernel = kernel_cls.start(host, info)
        kernel.same_host = _same_machine(info)
        return kernel

    def _wait_started(self, ray, started, group, runtime_env, progress) -> dict:
        building = bool(runtime_env)
        limit = time.monotonic() + (_BUILD_LIMIT if building else _START_LIMIT)
        tail = _BuildLog(ray, group, progress) if building else None
        began = time.monotonic()
        said = began
        try:
            while True:
                ready, _ = ray.wait([started], timeout=1.0)
                if ready:
                    break
                if tail is not None and tail.show():
                    said = time.monotonic()
                if building and time.monotonic() - said >= 15:
                    said = time.monotonic()
                    progress(f"[podstack] still building the session's environment on the Ray node "
                             f"({time.monotonic() - began:.0f}s)")
                if time.monotonic() > limit:
                    raise SessionDiedError(f"the session's Ray actor did not start within "
                                           f"{(_BUILD_LIMIT if building else _START_LIMIT):g}s")
            if tail is not None:
                tail.show()
            try:
                return ray.get(started)
            except ray.exceptions.RuntimeEnvSetupError as exc:
                raise EnvironmentBuildError(
                    f"Ray could not build the session's environment {json.dumps(runtime_env)}: "
                    f"{_last_lines(str(exc), 25)}\nCheck the package names and versions in --pip / --requirements."
                ) from None
            except ray.exceptions.RayError as exc:
                raise SessionDiedError(f"the session's Ray actor could not start its kernel: "
                                       f"{_last_lines(str(exc), 15)}") from None
        finally:
            if tail is not None:
                tail.close()


def _upload_local_modules(runtime_env: dict, progress: Progress) -> dict:
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    for path in runtime_env["py_modules"]:
        progress(f"[podstack] uploading {path} to the Ray cluster")
    with tempfile.TemporaryDirectory(prefix="podstack-ray-upload-") as scratch:
        return upload_py_modules_if_needed(dict(runtime_env), include_gitignore=True, scratch_dir=scratch)


class _BuildLog:
    """Shows the node's runtime_env build log (Ray writes it on the node) as the build goes."""

    def __init__(self, ray, group, progress: Progress):
        self.ray, self.progress, self.offset, self.pending, self.tail = ray, progress, 0, None, None
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            from . import _ray_host

            node_id = ray.util.placement_group_table(group)["bundles_to_node_id"][0]
            self.job = ray.get_runtime_context().get_job_id()
            self.tail = _ray_host.LogTail.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
        except Exception:  # noqa: BLE001 - without the log the cell still says the build is going on
            self.tail = None

    def show(self) -> bool:
        """Print what the log gained since last time; whether there was anything."""
        if self.tail is None:
            return False
        if self.pending is None:
            self.pending = self.tail.read.remote(self.job, self.offset)
        ready, _ = self.ray.wait([self.pending], timeout=0)
        if not ready:
            return False
        try:
            self.offset, text = self.ray.get(self.pending)
        except Exception:  # noqa: BLE001
            self.tail = None
            return False
        self.pending = None
        lines = [line.rstrip() for line in text.splitlines() if line.strip()]
        for line in lines:
            self.progress(f"[ray] {line[:400]}")
        return bool(lines)

    def close(self):
        if self.tail is not None:
            self.ray.kill(self.tail, no_restart=True)
            self.tail = None


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def _reachable(ip: str, port: int, limit: float = 10.0) -> bool:
    """Whether this machine can open the kernel's port on the node. A refusal means the node
    answered but the kernel is not listening yet (it binds a moment after it starts): ask again."""
    deadline = time.monotonic() + limit
    while True:
        try:
            with socket.create_connection((ip, port), timeout=3.0):
                return True
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        except OSError:  # no route, filtered, timed out: tunnel through the actor
            return False


def _same_machine(info: dict) -> bool:
    """Whether the kernel runs on this machine, in this pid namespace (so its pid means the same here)."""
    from ._ray_host import _same_machine_marks

    here = _same_machine_marks()
    return bool(here.get("boot_id")) and all(info.get(k) == here.get(k) for k in ("boot_id", "pid_namespace"))


# -- connections ------------------------------------------------------------------------------------
class _Watch:
    """Keeps asking the actor whether its kernel lives (and, directly connected, the kernel's heartbeat),
    so ``is_alive`` is a cheap read and a lost node is noticed within seconds."""

    def __init__(self, host, info: dict, heartbeat=None, silence_limit: float = SILENCE_LIMIT):
        import ray

        self.ray, self.host, self.info, self.heartbeat = ray, host, info, heartbeat
        self.silence_limit = silence_limit
        self.dead: str | None = None
        self.heard = self.pong = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podstack-ray-watch", daemon=True)
        self._thread.start()

    @property
    def where(self) -> str:
        return f"Ray node {self.info['node_ip']} ({self.info['node_id'][:8]})"

    def _run(self):
        pending = None
        while not self._stop.wait(_WATCH_INTERVAL) and self.dead is None:
            if pending is None:
                pending = self.host.status.remote()
            ready, _ = self.ray.wait([pending], timeout=0)
            if ready:
                try:
                    status = self.ray.get(pending)
                except self.ray.exceptions.RayError as exc:
                    self.dead = f"the Ray actor that held the session on {self.where} died: {_actor_death(exc)}"
                    break
                pending = None
                self.heard = time.monotonic()
                if not status["alive"]:
                    self.dead = _kernel_death(status, self.where)
                    break
            if self.heartbeat is not None and self.heartbeat.beat():
                self.pong = time.monotonic()
            silent = time.monotonic() - max(self.heard, self.pong if self.heartbeat is not None else self.heard)
            if silent > self.silence_limit:
                self.dead = (f"{self.where} stopped answering: no sign of the session's kernel or actor for "
                             f"{silent:.0f}s (the node may be gone)")
        if self.heartbeat is not None:
            self.heartbeat.close()

    def stop(self):
        self._stop.set()
        self._thread.join(3)

    def shut_down_host(self):
        self.stop()
        try:
            self.ray.get(self.host.shutdown.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - dead already, or the node is gone: killing is what is left
            pass
        try:
            self.ray.kill(self.host, no_restart=True)
        except Exception:  # noqa: BLE001
            pass


def _actor_death(exc) -> str:
    text = str(exc)
    for marker in ("The actor died because its node has died", "Worker exit detail:", "The actor is dead because"):
        at = text.find(marker)
        if at >= 0:
            return text[at:].splitlines()[0].strip()
    return _last_lines(text, 3)


def _kernel_death(status: dict, where: str) -> str:
    code = status.get("code")
    if code is None:
        reason = f"the kernel on {where} stopped"
    elif code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = f"the kernel on {where} was killed by {name}" + (
            " (the node may have run out of memory)" if -code == signal.SIGKILL else "")
    else:
        reason = f"the kernel on {where} exited with code {code}"
    printed = status.get("printed")
    return f"{reason}; it printed:\n{printed}" if printed else reason


class _Heartbeat:
    """Pings the kernel's heartbeat port (answered by a thread of its own, even while a cell runs)."""

    def __init__(self, info: dict):
        import zmq

        self.zmq = zmq
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(f"tcp://{info['ip']}:{info['hb_port']}")

    def beat(self) -> bool:
        answered = False
        while True:
            try:
                self.socket.recv_multipart(self.zmq.NOBLOCK)
                answered = True
            except self.zmq.Again:
                break
        try:
            self.socket.send_multipart([b"", b"ping"], self.zmq.NOBLOCK)
        except self.zmq.Again:
            pass
        return answered

    def close(self):
        self.socket.close(linger=0)


class _ActorControl:
    """What both connection kinds do through the actor: interrupt, liveness, death reason, shutdown."""

    def interrupt(self) -> None:
        if self.watch.dead is None:
            self.watch.host.interrupt.remote()

    def is_alive(self) -> bool:
        return self.watch.dead is None

    def death_reason(self) -> str:
        return self.watch.dead or "the kernel is running"

    @property
    def node(self) -> str:
        return self.watch.info["node_ip"]

    @property
    def kernel_pid(self) -> int | None:
        return self.watch.info.get("kernel_pid")


class RayKernel(_ActorControl, ZMQConnection):
    """Connected straight to the kernel's ports on the node."""

    @classmethod
    def start(cls, host, info: dict) -> "RayKernel":
        kernel = cls.from_connection_info(info["connection"])
        kernel.host = host
        kernel.watch = _Watch(host, info, heartbeat=_Heartbeat(info["connection"]))
        return kernel

    def shutdown(self) -> None:
        self.watch.dead = self.watch.dead or "the session was shut down"
        self.close_sockets()
        self.watch.shut_down_host()


class RayRelayKernel(_ActorControl, Connection):
    """The kernel's messages relayed by its actor (the notebook cannot reach the node's ports)."""

    @classmethod
    def start(cls, host, info: dict) -> "RayRelayKernel":
        import ray
        from jupyter_client.session import Session

        ray.get(host.open_relay.remote())
        kernel = cls()
        kernel.ray, kernel.host = ray, host
        connection = info["connection"]
        kernel.session = Session(key=connection["key"].encode(), signature_scheme=connection["signature_scheme"])
        kernel.watch = _Watch(host, info, silence_limit=_RELAY_SILENCE_LIMIT)
        kernel._inbox, kernel._pending = [], None
        return kernel

    def send(self, channel: str, msg_type: str, content: dict, metadata: dict | None = None,
             buffers: list | None = None, parent: dict | None = None) -> str:
        import numpy as np

        msg = self.session.msg(msg_type, content=content, metadata=metadata, parent=parent)
        frames = self.session.serialize(msg)
        # numpy views travel through Ray's object store without a pickle copy
        frames += [np.frombuffer(memoryview(b).cast("B"), dtype=np.uint8) for b in buffers or ()]
        self.host.relay_send.remote(channel, frames)
        self.bytes_sent += sum(memoryview(b).nbytes for b in buffers or ())
        return msg["header"]["msg_id"]

    def forward(self, channel: str, msg: dict) -> None:
        import numpy as np

        buffers = list(msg.get("buffers") or ())
        frames = self.session.serialize({k: v for k, v in msg.items() if k != "buffers"})
        frames += [np.frombuffer(memoryview(b).cast("B"), dtype=np.uint8) for b in buffers]
        self.host.relay_send.remote(channel, frames)
        self.bytes_sent += sum(memoryview(b).nbytes for b in buffers)

    def recv(self, timeout: float) -> tuple[str, dict] | None:
        if not self._inbox:
            if self._pending is None:
                self._pending = self.host.relay_recv.remote(0.5)
            ready, _ = self.ray.wait([self._pending], timeout=max(0.0, timeout))
            if not ready:
                return None
            try:
                batch = self.ray.get(self._pending)
            except self.ray.exceptions.RayError as exc:
                self.watch.dead = self.watch.dead or (
                    f"the Ray actor that held the session on {self.watch.where} died: {_actor_death(exc)}")
                self._pending = None
                return None
            self._pending = None
            self._inbox.extend(batch)
            if not self._inbox:
                return None
        channel, frames = self._inbox.pop(0)
        # [identities..., DELIM, signature, header, parent, metadata, content, *buffers]; large frames are arrays
        start = next(i for i, f in enumerate(frames) if isinstance(f, bytes) and f == b"<IDS|MSG>") + 1
        msg = self.session.deserialize([bytes(f) for f in frames[start:start + 5]] + frames[start + 5:], content=True)
        self.bytes_received += sum(memoryview(b).nbytes for b in msg["buffers"])
        return channel, msg

    def shutdown(self) -> None:
        self.watch.dead = self.watch.dead or "the session was shut down"
        self.watch.shut_down_host()
