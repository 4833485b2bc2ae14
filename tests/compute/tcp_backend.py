"""A second backend for the tests, written only against the contract in ``backends/_base.py``.

Its kernel is reached the way a kernel on another node would be: over TCP ports,
interrupted by an ``interrupt_request`` on the control channel (no signals), and
``same_host`` is False. It is installed through a ``podstack.backends`` entry point
by the test that uses it, as the Ray and Jupyter backends will be.
"""

from __future__ import annotations

from jupyter_client import KernelManager

from podstack_jupyter.compute.backends import Allocation, Backend, Environment, kernel_environ
from podstack_jupyter.compute.backends._zmq import ZMQConnection
from podstack_jupyter.errors import GPUNotAvailableError, InvalidArgumentError


class TcpBackend(Backend):
    name = "tcp-test"

    def __init__(self):
        self.released: list[Allocation] = []

    def validate(self, spec) -> None:
        if spec.fraction < 100:
            raise InvalidArgumentError("the tcp-test backend cannot share a GPU; drop --fraction")

    def inventory(self) -> list[dict]:
        return [{"index": 0, "type": "T4", "name": "test T4", "used_percent": 0, "node": "node-a"}]

    def allocate(self, spec) -> Allocation:
        if spec.type not in (None, "T4"):
            raise GPUNotAvailableError(f"the test node has no {spec.type}; it has: T4", available={"T4": 1})
        return Allocation([0], "T4")

    def release(self, allocation: Allocation) -> None:
        self.released.append(allocation)

    def start_kernel(self, spec, allocation: Allocation, environment: Environment) -> "TcpConnection":
        km = KernelManager(kernel_name="python3", transport="tcp", ip="127.0.0.1")
        km.start_kernel(env=kernel_environ())
        # connected from its connection info alone, as to a kernel a remote node started
        return TcpConnection.from_connection_info(km.get_connection_info(), km=km)


class TcpConnection(ZMQConnection):
    same_host = False

    def __init__(self, session, sockets, km: KernelManager):
        self.km = km  # process control only: messages go through the sockets
        super().__init__(session, sockets)

    # interrupt(): ZMQConnection's control-channel interrupt_request, as for a remote kernel

    def is_alive(self) -> bool:
        return self.km.is_alive()

    def death_reason(self) -> str:
        return "the test node lost its kernel"

    def shutdown(self) -> None:
        self.close_sockets()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)
        self.km.cleanup_resources()
