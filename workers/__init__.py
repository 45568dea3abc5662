"""Background work: RQ queues, the worker and scheduler processes, and the job functions by area."""
