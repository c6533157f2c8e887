"""What the operator keeps per object, part by part: live Python bytes by tracemalloc.

The scale benchmark (``operator_scale.py --tracemalloc``) says which packages hold the idle
operator's memory; this one says what each kind of object costs, so a figure there can be
divided into objects. Each part is built a thousand times in one interpreter, and the traced
bytes it adds are divided by a thousand:

* kopf's memory of one watched object (kopf keeps one for every object it has seen an event
  of: EnvSyncs, their sources, and, where the API server ignores label selectors, every
  ConfigMap and Secret);
* envsync's tracker of one EnvSync, empty, and with the last-seen copy of a typical object;
* the pools of one sync (its EnvSync's ``spec.memory`` made real), alive while it runs.

    python bench/footprint_parts.py
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from kopf._core.reactor import inventory

from envsync.dotenv import poolmanager
from envsync.operator import outcome, translate
from envsync.operator import tracker as tracker_module

COUNT = 1000

BODY: dict[str, Any] = {
    "metadata": {"namespace": "team-a", "name": "app", "uid": "0" * 36, "generation": 1,
                 "resourceVersion": "123456"},
    "spec": {"source": {"configMapRef": {"name": "app-env", "key": ".env"}},
             "target": {"type": "ssm", "path": "/team-a/app/", "region": "eu-west-1"},
             "syncPolicy": {"prune": True}},
    "status": {"observedGeneration": 1, "sourceHash": "sha256:" + "0" * 64,
               "lastSyncTime": "2026-12-06T10:00:00Z", "keys": 100,
               "conditions": [{"type": t, "status": "True", "reason": "Synced",
                               "message": "100 keys in sync", "observedGeneration": 1,
                               "lastTransitionTime": "2026-12-06T10:00:00Z"}
                              for t in ("Ready", "Synced")]},
}  # fmt: skip


def per_object(build: Callable[[int], Any]) -> float:
    """Traced bytes per object, in KiB, over COUNT objects kept alive together."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = [build(i) for i in range(COUNT)]
    after = tracemalloc.get_traced_memory()[0]
    del kept
    return (after - before) / COUNT / 1024


async def main() -> None:
    tracemalloc.start()
    memories = inventory.ResourceMemories()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(COUNT):
        body = {"metadata": {"uid": f"uid-{i}", "name": f"n{i}", "namespace": "x"}}
        await memories.recall(body, noticed_by_listing=True)
    gc.collect()
    kopf_kib = (tracemalloc.get_traced_memory()[0] - before) / COUNT / 1024

    def tracker(i: int) -> Any:
        return tracker_module.Tracker(("team-a", f"app{i}"))

    def tracker_with_copy(i: int) -> Any:
        found = tracker_module.Tracker(("team-a", f"app{i}"))
        found.seen = outcome.Seen.of(BODY, translate.FORCE_ANNOTATION)
        return found

    def pool_set(i: int) -> Any:
        return poolmanager.PoolManager(
            poolmanager.PoolConfig(), max_concurrent_syncs=1, back_pressure=False
        )

    rows = [
        ("kopf's memory of one watched object (ResourceMemory)", kopf_kib),
        ("envsync tracker of one EnvSync, empty", per_object(tracker)),
        ("envsync tracker with the last-seen copy (Seen)", per_object(tracker_with_copy)),
        ("one sync's pools (PoolManager), while the sync runs", per_object(pool_set)),
    ]
    print(f"| part (each built {COUNT:,} times) | KiB per object |\n|---|---|")
    for label, kib in rows:
        print(f"| {label} | {kib:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
