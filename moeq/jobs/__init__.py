"""Job execution: settings, Celery app and tasks, the local runner used by the CLI."""
