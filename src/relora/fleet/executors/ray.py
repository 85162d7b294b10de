"""The Ray executor: one plain Ray task per adapter, with num_gpus and max_retries.

ray.init(address=...) joins an existing cluster; with no address it starts a
local one. A task killed mid-job is retried by Ray; its retry re-claims the
row because the claim token is the same for every attempt of that task.
"""

from __future__ import annotations

import socket
import uuid

from relora.errors import Unavailable
from relora.fleet.progress import LiveBar
from relora.fleet.worker import process
from relora.fleet.config import FleetConfig
from relora.fleet.ledger import Ledger


def ray_job(fleet_json: str, name: str, token: str, retry_failed: bool) -> str:
    """One adapter on the GPU Ray assigned this task (Ray sets CUDA_VISIBLE_DEVICES to it, so
    `device: auto` finds it as cuda:0)."""
    import ray

    fleet = FleetConfig.model_validate_json(fleet_json)
    ledger = Ledger(fleet.ledger_url)
    entry = next(e for e in fleet.adapters if e.name == name)
    if not ledger.claim(name, token, fleet.lease_s, retry_failed):
        return "skipped"  # final already, or another rollout holds it
    return process(fleet, ledger, entry, token, [str(i) for i in ray.get_gpu_ids()])


def check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """ray.init(address="host:port") retries for as long as nothing answers there: try the port first, and stop
    in one line (exit 3) when no cluster listens. "auto", a ray:// client address or None are left to Ray."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise Unavailable(f"ray.address {address}", f"no Ray cluster answers there ({reason})",
                         "start the cluster (ray start --head) or fix ray.address; leave it unset for a local one"
                         ) from None


def run_on_ray(fleet: FleetConfig, ledger: Ledger, retry_failed: bool, progress: bool) -> list[str]:
    import ray

    if not ray.is_initialized():
        check_reachable(fleet.ray.address)
        ray.init(address=fleet.ray.address, log_to_driver=False)
    remote = ray.remote(ray_job).options(num_gpus=fleet.ray.num_gpus, num_cpus=fleet.ray.num_cpus,
                                         max_retries=fleet.ray.max_retries, retry_exceptions=False)
    rollout_id = uuid.uuid4().hex[:8]
    payload = fleet.model_dump_json()
    refs = [remote.remote(payload, e.name, f"ray:{rollout_id}:{e.name}", retry_failed) for e in fleet.adapters]
    with LiveBar(ledger, len(fleet.adapters), progress):
        return ray.get(refs)
