"""Webhook load generator: a bounded number of client processes POST pre-signed partner events to
a local server. No Django here: children are spawned, and only send bytes and time them.

Each client owns whole lines (a line's events go in order, one after another, from one client),
so the state machine sees what a real partner sends: accepted → compounding → shipped → delivered.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import time
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, per request
    statuses: dict[str, int]  # "200 applied", "200 duplicate", "409", ...
    wall_seconds: float
    sent: int
    stopped_by_deadline: bool


def _client(port: int, requests: list[tuple[str, bytes, dict]], start, deadline_s: float, out) -> None:
    start.wait(60)
    t_begin = time.monotonic()
    latencies, statuses, stopped = [], {}, False
    for path, body, headers in requests:
        if time.monotonic() - t_begin > deadline_s:
            stopped = True
            break
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            key = str(resp.status)
            if resp.status == 200:
                try:
                    key += " " + json.loads(data).get("status", "")
                except ValueError:
                    pass
        except OSError as exc:
            key = f"error {exc.__class__.__name__}"
        latencies.append(time.perf_counter() - t0)
        statuses[key] = statuses.get(key, 0) + 1
    out.put((latencies, statuses, t_begin, time.monotonic(), stopped))


def run_load(*, port: int, per_client: list[list[tuple[str, bytes, dict]]], deadline_s: float) -> LoadResult:
    """Send each client's requests (in order) from its own process; all start together."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, reqs, start, deadline_s, out), daemon=True) for reqs in per_client]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let the spawned interpreters reach start.wait()
    t_start = time.monotonic()
    start.set()
    results = []
    try:
        for _ in procs:
            results.append(out.get(timeout=deadline_s + 120))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    latencies, statuses, stopped = [], {}, False
    t_end = t_start
    for lat, st, _t_begin, t_done, was_stopped in results:
        latencies.extend(lat)
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
        t_end = max(t_end, t_done)
        stopped = stopped or was_stopped
    return LoadResult(latencies=latencies, statuses=statuses, wall_seconds=t_end - t_start, sent=len(latencies),
                      stopped_by_deadline=stopped)
