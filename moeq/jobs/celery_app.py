"""Celery application built from settings (no module-level app): broker, backend, task rules."""

from __future__ import annotations

from celery import Celery

from moeq.jobs.settings import Settings

TASK_NAME = "moeq.run_recipe"  # tasks are sent by name with only the run id (moeq.jobs.submit.enqueue)
QUEUE = "gpu"


def make_celery(settings: Settings) -> Celery:
    """Tasks are enqueued by name with a run id; late acks, reject on worker loss, prefetch 1."""
    app = Celery("moeq", broker=settings.effective_broker_url(), backend=settings.effective_result_backend())
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    if settings.broker_url and settings.broker_url.startswith("redis"):
        app.conf.broker_transport_options = {"visibility_timeout": 6 * 3600}

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_recipe(self, run_id: str) -> str:
        from moeq.jobs.execute import execute_run

        return execute_run(settings, run_id, worker_host=self.request.hostname)["status"]

    return app
