"""Running test code in threads that start together, for the concurrency tests (PostgreSQL)."""

import threading

from django.db import connection


def run_threads(*targets, timeout=120):
    """Run each callable in its own thread, all released at the same moment; every thread closes
    its own database connection. Returns the exceptions raised, as reprs (none is lost)."""
    errors = []
    start = threading.Barrier(len(targets))

    def wrap(target):
        try:
            start.wait()
            target()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return errors
