"""A background worker that emits audit events with the context of the request that queued the job.

The web request captures its audit context (actor, tenant, request and trace ids) into the job
payload; the worker re-enters it, so events emitted deep inside the job carry the right actor::

    python examples/background_worker.py --url http://127.0.0.1:8700
"""

from __future__ import annotations

import argparse
import queue
import threading
from typing import Any

from trailseal.sdk import (
    AuditClient,
    Emitter,
    audit_context,
    current_context,
    emit,
    set_default_client,
)


def enqueue_report(jobs: queue.Queue[dict[str, Any]], report_id: str) -> None:
    """What the web handler does: queue the job with its audit context."""
    jobs.put({"report_id": report_id, "audit": current_context().to_dict()})


def generate(report_id: str) -> None:
    """Deep inside the job: no audit parameters passed down, the context supplies them."""
    emit(action="report.generate", resource=f"report:{report_id}", outcome="success",
         metadata={"rows": 1200})


def worker(jobs: queue.Queue[dict[str, Any]]) -> None:
    while (job := jobs.get()) is not None:
        with audit_context(**job["audit"], actor_type="user"):  # the requester, not the worker
            generate(job["report_id"])
        jobs.task_done()
    jobs.task_done()


def run(client: Emitter, reports: int = 3) -> None:
    """Queue ``reports`` jobs as two different users and process them on a worker thread."""
    previous = set_default_client(client)
    jobs: queue.Queue[Any] = queue.Queue()
    thread = threading.Thread(target=worker, args=(jobs,), daemon=True)
    thread.start()
    try:
        for n in range(reports):
            with audit_context(actor=("alice" if n % 2 == 0 else "bob"), tenant="default", request_id=f"req-{n}"):
                enqueue_report(jobs, f"r-{n}")
        jobs.put(None)
        jobs.join()
    finally:
        set_default_client(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8700")
    args = parser.parse_args()
    with AuditClient(args.url, source={"service": "report-worker"}) as client:
        run(client)
        print("undelivered:", client.flush(30))


if __name__ == "__main__":
    main()
