"""Ray Serve serving work.py's models through its gRPC proxy with the project's own protos
(synesthesia.v1 Captioning.Caption and Embedding.EmbedImages), one replica per model,
`@serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)`.

Run inside the ray environment: `python ray_server.py GRPC_PORT HTTP_PORT P1 P2 P3 P4` (P1-P4: the
agents' and metrics ports); it stays up until killed. CPU workarounds: a local Ray on 127.0.0.1 with num_cpus set to the machine's cores, no
dashboard, usage stats off (RAY_USAGE_STATS_ENABLED=0, set by the launcher), a small object store,
replicas that reserve no CPUs so both fit on a 2-core machine, and patience at start-up on a loaded
machine (patient_startup and fixed_agent_ports below). The batch runs in a thread
(asyncio.to_thread) so the replica's event loop keeps accepting calls while the model runs, as
Ray's documentation recommends for blocking work.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

import ray
from ray import serve
from ray.serve.config import gRPCOptions, HTTPOptions
from synesthesia.v1 import captioning_pb2, embedding_pb2

from tests.benchmarks.peers import work

BATCH = dict(max_batch_size=work.MAX_BATCH_SIZE, batch_wait_timeout_s=work.MAX_WAIT_MS / 1000.0)
REPLICA = dict(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64, num_replicas=1,
               health_check_timeout_s=120)


@serve.deployment(**REPLICA)
class Captioning:
    def __init__(self) -> None:
        work.set_threads()
        self.model = work.Captioning()

    @serve.batch(**BATCH)
    async def _batch(self, pngs: list[bytes]) -> list[tuple[str, float]]:
        return await asyncio.to_thread(self.model, pngs)

    async def Caption(self, request: captioning_pb2.CaptionRequest) -> captioning_pb2.CaptionResponse:
        text, log_probability = await self._batch(request.image.data)
        return captioning_pb2.CaptionResponse(caption=text, log_probability=log_probability, model="captioning")


@serve.deployment(**REPLICA)
class Embedding:
    def __init__(self) -> None:
        work.set_threads()
        self.model = work.Embedding()

    @serve.batch(**BATCH)
    async def _batch(self, pngs: list[bytes]) -> list:
        return list(await asyncio.to_thread(self.model, pngs))

    async def EmbedImages(self, request: embedding_pb2.EmbedImagesRequest) -> embedding_pb2.EmbedImagesResponse:
        from synesthesia.tensors import to_tensor

        vector = await self._batch(request.images[0].data)
        return embedding_pb2.EmbedImagesResponse(embeddings=to_tensor(vector[None]), model="embedding")


def patient_startup(timeout_s: float = 300.0) -> None:
    """Workaround for a loaded small machine: ray.init gives the raylet a fixed 30 s to register
    (node.py), and the raylet waits for its Python agents, which can take longer than that to import
    when other work shares the cores. Retry the registration lookup for `timeout_s` instead."""
    import time

    from ray._private import services

    lookup = services.get_node

    def get_node(*args, **kwargs):
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return lookup(*args, **kwargs)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    services.get_node = get_node


def fixed_agent_ports(ports: list[int]) -> None:
    """Workaround for a loaded small machine: with agent ports left to 0 the raylet waits a fixed
    15 s for each Python agent to write its port file and aborts (a failed check) when an agent
    takes longer to import. Given ports, it has nothing to wait for. ray.init does not expose them,
    so they go into RayParams; the dashboard agent's HTTP port also needs its file written
    (announce_listen_port)."""
    from ray._private import parameter

    init = parameter.RayParams.__init__

    def with_ports(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.metrics_agent_port = self.metrics_agent_port or ports[0]
        self.dashboard_agent_listen_port = ports[1]
        self.runtime_env_agent_port = self.runtime_env_agent_port or ports[2]
        self.metrics_export_port = self.metrics_export_port or ports[3]

    parameter.RayParams.__init__ = with_ports
    threading.Thread(target=announce_listen_port, args=(ports[1],), daemon=True).start()


def announce_listen_port(port: int, temp_dir: str = "/tmp/ray", timeout_s: float = 300.0) -> None:
    """The raylet has no flag for the dashboard agent's HTTP port and always waits for the agent to
    write it to `dashboard_agent_listen_port_<node id>` in the session folder; the port is fixed
    here, so write that file (same format: the digits) as soon as the session's node id is known."""
    import glob
    import time

    started, deadline = time.time(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for gcs_file in glob.glob(f"{temp_dir}/session_*/gcs_server_port_*"):
            if os.path.getmtime(gcs_file) < started - 1:
                continue  # an older session
            session, name = os.path.split(gcs_file)
            target = os.path.join(session, "dashboard_agent_listen_port_" + name[len("gcs_server_port_"):])
            if not os.path.exists(target):
                with open(target + ".tmp", "w") as out:
                    out.write(str(port))
                os.replace(target + ".tmp", target)
            return
        time.sleep(0.1)


def main() -> None:
    grpc_port, http_port, *agent_ports = (int(a) for a in sys.argv[1:7])
    patient_startup()
    fixed_agent_ports(agent_ports)
    # serve.start waits 60 s for its proxy actor, which can take longer to import on a loaded machine.
    from ray.serve._private import api as serve_api, client as serve_client

    serve_api.HTTP_PROXY_TIMEOUT = serve_client.HTTP_PROXY_TIMEOUT = 600
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=256 << 20,
             _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"SYN_TORCH_THREADS": os.environ.get("SYN_TORCH_THREADS", "1"),
                                       "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}})
    serve.start(
        http_options=HTTPOptions(host="127.0.0.1", port=http_port),
        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=[
            "synesthesia.v1.captioning_pb2_grpc.add_CaptioningServicer_to_server",
            "synesthesia.v1.embedding_pb2_grpc.add_EmbeddingServicer_to_server",
        ]))
    serve.run(Captioning.bind(), name="captioning", route_prefix="/captioning")
    serve.run(Embedding.bind(), name="embedding", route_prefix="/embedding")
    print("ray serve ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
