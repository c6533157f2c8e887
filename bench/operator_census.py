"""What an idle operator keeps alive, counted object by object, and who keeps it.

tracemalloc (``operator_scale.py --tracemalloc``) says which code allocated the live memory;
this says which objects hold it, and what refers to them, without slowing the run: the
operator runs as in ``operator_scale.py`` (a child process; kmock and moto here), every EnvSync
becomes Ready, and then the child, on a signal, walks ``gc.get_objects()``:

* containers by type (count, ``sys.getsizeof`` total) and the strings, bytes and numbers they
  hold;
* objects that look like a Kubernetes object (a dict with ``metadata`` and ``kind``, ``spec``
  or ``data``): kept bodies, and what refers to them;
* kopf causes (``WatchingCause``) still alive: a handler's event kept past its handler;
* what refers to the ``collections.deque`` objects (queues, locks, caches).

It also reports the RSS before and after ``malloc_trim(0)``: memory the C allocator holds
free, which trimming hands back.

    python bench/operator_census.py                         # 300 EnvSyncs × 20, 3,000 others
    python bench/operator_census.py --count 1000 --keys 100 --unrelated 10000
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from envsync.cli import sandbox, sandboxclient
from operator_rss import CHILD, ROOT, create_apps, operator_env, ready_count, rss_mib
from operator_scale import REGIONS, SERVER, _create_unrelated

CENSUS = r"""
import collections, ctypes, gc, os, signal, sys


def _name(kind):
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', '?')}"


def _referrers(sample, label, out, skip):
    counted = collections.Counter()
    for obj in sample:
        for ref in gc.get_referrers(obj):
            if any(ref is s for s in skip) or type(ref).__name__ == "frame":
                continue
            key = _name(type(ref))
            if isinstance(ref, dict):
                key += " keys=" + ",".join(sorted(map(str, list(ref)[:6])))
            counted[key] += 1
    out.append(f"{label}: {len(sample)} sampled; referred to by")
    out.extend(f"    {n:6d} {key[:160]}" for key, n in counted.most_common(8))


def _census(*_):
    gc.collect()
    objs = gc.get_objects()
    out = [f"containers tracked by gc: {len(objs)}"]
    count, size = collections.Counter(), collections.Counter()
    seen, leaves, leaf_count = set(), collections.Counter(), collections.Counter()
    for obj in objs:
        name = _name(type(obj))
        count[name] += 1
        size[name] += sys.getsizeof(obj)
        for ref in gc.get_referents(obj):
            if type(ref) in (str, bytes, int, float) and id(ref) not in seen:
                seen.add(id(ref))
                leaves[type(ref).__name__] += sys.getsizeof(ref)
                leaf_count[type(ref).__name__] += 1
    out.append("containers by type (top 20):")
    out.extend(f"  {s / 2**20:8.2f} MiB {count[n]:8d}  {n}" for n, s in size.most_common(20))
    out.append("strings, bytes and numbers they hold:")
    out.extend(f"  {s / 2**20:8.2f} MiB {leaf_count[n]:8d}  {n}" for n, s in leaves.items())
    bodies = [o for o in objs if type(o) is dict and "metadata" in o
              and ("kind" in o or "spec" in o or "data" in o)]
    kinds = collections.Counter(str(b.get("kind"))[:40] for b in bodies)
    out.append(f"Kubernetes-object-like dicts: {len(bodies)} {kinds.most_common(5)}")
    _referrers(bodies[:: max(1, len(bodies) // 200)], "  those dicts", out, (objs, bodies))
    causes = [o for o in objs if type(o).__name__ == "WatchingCause"]
    out.append(f"kopf WatchingCause objects alive: {len(causes)}")
    if causes:
        _referrers(causes[:100], "  those causes", out, (objs, causes))
    queues = [o for o in objs if type(o) is collections.deque]
    _referrers(queues[:: max(1, len(queues) // 300)], f"deques ({len(queues)})", out,
               (objs, queues))
    with open(os.environ["BENCH_CENSUS"] + ".part", "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(os.environ["BENCH_CENSUS"] + ".part", os.environ["BENCH_CENSUS"])


def _trim(*_):
    ctypes.CDLL("libc.so.6").malloc_trim(0)


signal.signal(signal.SIGUSR2, _census)
signal.signal(signal.SIGUSR1, _trim)
"""
"""Prepended to the child's code: the census on SIGUSR2, ``malloc_trim(0)`` on SIGUSR1."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="EnvSyncs")
    parser.add_argument("--keys", type=int, default=20, help="variables per .env")
    parser.add_argument("--regions", type=int, default=20, help="regions to spread them over")
    parser.add_argument("--unrelated", type=int, default=3000, help="unshared ConfigMaps/Secrets")
    parser.add_argument("--quiet-seconds", type=float, default=30.0, help="idle before counting")
    args = parser.parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="envsync-census-"))
    report = workdir / "census.txt"
    with sandbox.KubernetesServer(request_log_limit=8) as kube, sandbox.AwsServer() as aws:
        SERVER[:] = [kube]
        client = sandboxclient.KubeClient(kube.url)
        client.create(sandbox.load_manifests(ROOT / "crds")[0])
        env = {**operator_env(kube, aws, workdir), "BENCH_CENSUS": str(report)}
        with (workdir / "operator.log").open("w") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", CENSUS + CHILD], env=env, stdout=log, stderr=log
            )
            try:
                proc = psutil.Process(child.pid)
                _create_unrelated(client, args.unrelated)
                time.sleep(8)  # imports, login, first listings
                idle = rss_mib(proc)[0]
                regions = tuple(REGIONS[: max(1, min(args.regions, len(REGIONS)))])
                create_apps(client, "scale", args.count, args.keys, regions)
                while ready_count(client, "scale") < args.count:
                    if child.poll() is not None:
                        print(f"the operator exited; see {workdir / 'operator.log'}")
                        return 1
                    time.sleep(2.0)
                time.sleep(args.quiet_seconds)  # kopf's per-object workers finish their backlog
                ready = rss_mib(proc)[0]
                child.send_signal(signal.SIGUSR1)
                time.sleep(3.0)
                trimmed = rss_mib(proc)[0]
                child.send_signal(signal.SIGUSR2)
                deadline = time.monotonic() + 600
                while not report.exists() and time.monotonic() < deadline:
                    time.sleep(1.0)
            finally:
                child.terminate()
                child.wait(timeout=60)
    print(f"{args.count} EnvSyncs × {args.keys} variables, {args.unrelated} unrelated objects")
    print(f"RSS idle before any EnvSync {idle:.1f} MiB; all Ready and quiet {ready:.1f} MiB; "
          f"after malloc_trim(0) {trimmed:.1f} MiB")  # fmt: skip
    print(report.read_text() if report.exists() else "no census within 600 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
