"""A real ``qcluster`` killed (SIGKILL) while it is sending a partner order, then started again:
every line reaches the partner exactly once and is recorded sent once; nothing is lost. On
PostgreSQL, with each of django-q2's brokers (the ORM broker and Redis) — issue 12, item 7.

The cluster runs in its own process group on the test database (committed rows: a transactional
test), on a queue name of its own, so parallel test runs never share tasks. The partner is a real
HTTP server on 127.0.0.1 that keeps the order and then stalls before answering, so the worker is
killed mid-call, as a crash or an OOM kill would leave it. The reclaimer (what the every-minute
schedule runs) queues the order again once its lease (the task timeout) has run out."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from catalog.tests.factories import PartnerFactory
from fulfillment.models import LineEvent, OrderLine, PartnerOrder
from fulfillment.tests.factories import order_with_lines
from fulfillment.tests.fake_partner import FakePartner

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
S = OrderLine.Status
PO = PartnerOrder.Status
Q_TIMEOUT = 15  # the lease; PARTNER_ATTEMPT_DEADLINE (5) + fizy.checks' recording margin (10) fits in it


def redis_is_running() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def wait_for(what: str, check, *, timeout: float, proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"qcluster exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:] if log else ''}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{log.read_text()[-3000:]}" if log else ""))


class Cluster:
    """``manage.py qcluster`` and one-off ``manage.py shell -c`` commands, on the test database,
    with the chosen broker and a queue of their own."""

    def __init__(self, broker: str, log_dir: Path):
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "fizy.settings_test",
            "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "FIZY_TEST_BROKER": broker,
            "Q_SYNC": "false",
            "Q_CLUSTER_NAME": f"fizy-killtest-{uuid.uuid4().hex[:10]}",
            "Q_WORKERS": "1",
            "Q_TIMEOUT": str(Q_TIMEOUT),
            "Q_RETRY": str(Q_TIMEOUT + 5),
            "PARTNER_ATTEMPT_DEADLINE": "5",
            "PARTNER_READ_TIMEOUT": "5",
        }
        self.log = log_dir / "qcluster.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self.proc

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group: the sentinel and its workers
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its group that outlived the leader
        except (ProcessLookupError, PermissionError):
            pass

    def run(self, code: str) -> None:
        done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(params=["orm", "redis"])
def cluster(request, tmp_path):
    if request.param == "redis" and not redis_is_running():
        pytest.skip("Redis is not running on 127.0.0.1:6379 (bash .ci/services starts it)")
    running = Cluster(request.param, tmp_path)
    yield running
    running.stop()


def test_a_qcluster_killed_mid_dispatch_and_restarted_sends_every_line_exactly_once(cluster):
    with FakePartner() as partner_api:
        partner_api.script = ["hang"]  # keeps the order, then says nothing until released
        partner = PartnerFactory(name="Harbor", api_base_url=partner_api.base_url, api_key=partner_api.api_key)
        order = order_with_lines(partners=[partner], lines_per_partner=4)
        partner_order = order.partner_orders.get()
        line_ids = sorted(order.lines.values_list("pk", flat=True))

        proc = cluster.start()
        cluster.run(f"from django_q.tasks import async_task; async_task('fulfillment.tasks.dispatch_partner_order', {partner_order.pk})")
        wait_for("the partner to receive the order", lambda: partner_api.of_kind("order"), timeout=90, proc=proc, log=cluster.log)
        cluster.kill()  # mid-call: the partner has the order, we have recorded nothing

        partner_order.refresh_from_db()
        assert partner_order.status == PO.SENDING
        assert set(order.lines.values_list("status", flat=True)) == {S.PENDING}
        partner_api.release.set()  # the stalled answer goes nowhere: its worker is gone

        # Restarted; once the dead worker's lease has run out, the reclaimer queues the order again.
        proc = cluster.start()
        wait_for("the lease to run out", lambda: not PartnerOrder.objects.filter(
            pk=partner_order.pk, status=PO.SENDING, next_attempt_at__gte=_now()).exists(), timeout=Q_TIMEOUT + 30)
        cluster.run("from fulfillment.dispatch import partner_orders_reclaim; partner_orders_reclaim()")
        wait_for("the partner order to be recorded sent",
                 lambda: PartnerOrder.objects.filter(pk=partner_order.pk, status=PO.SENT).exists(),
                 timeout=120, proc=proc, log=cluster.log)

    partner_order.refresh_from_db()
    kept = list(partner_api.orders.values())
    assert len(kept) == 1, "the partner kept one order"
    assert partner_order.partner_reference == kept[0]["reference"]
    assert sorted(line["line_id"] for line in kept[0]["payload"]["lines"]) == line_ids  # each line once
    keys = {call["key"] for call in partner_api.of_kind("order")}
    assert keys == {str(partner_order.idempotency_key)}  # every attempt under the same key
    assert set(order.lines.values_list("status", flat=True)) == {S.SENT}
    for line_id in line_ids:
        sent = LineEvent.objects.filter(line_id=line_id, to_status=S.SENT, applied=True)
        assert sent.count() == 1, f"line {line_id} recorded sent {sent.count()} times"


def _now():
    from django.utils import timezone

    return timezone.now()
