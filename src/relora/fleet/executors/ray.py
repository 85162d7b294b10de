"""The Ray executor: one plain Ray task per adapter, with num_gpus and max_retries.

ray.init(address=...) joins an existing cluster; with no address it starts a
local one. A task killed mid-job is retried by Ray; its retry re-claims the
row because the claim token is the same for every attempt of that task.
"""

from __future__ import annotations

import uuid

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


def run_on_ray(fleet: FleetConfig, ledger: Ledger, retry_failed: bool, progress: bool) -> list[str]:
    import ray

    if not ray.is_initialized():
        ray.init(address=fleet.ray.address, log_to_driver=False)
    remote = ray.remote(ray_job).options(num_gpus=fleet.ray.num_gpus, num_cpus=fleet.ray.num_cpus,
                                         max_retries=fleet.ray.max_retries, retry_exceptions=False)
    rollout_id = uuid.uuid4().hex[:8]
    payload = fleet.model_dump_json()
    refs = [remote.remote(payload, e.name, f"ray:{rollout_id}:{e.name}", retry_failed) for e in fleet.adapters]
    with LiveBar(ledger, len(fleet.adapters), progress):
        return ray.get(refs)
