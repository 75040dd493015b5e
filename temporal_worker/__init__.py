"""Composition root: the one place that knows both `ai` and `stories` and wires them into a
Temporal Worker. `python -m temporal_worker` or `manage.py run_worker` starts it."""
