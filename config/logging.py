"""Structured logs: one line per event, `key=value` pairs an operator can grep or ship.

Pass context with `extra={"job_id": ..., "workflow_id": ...}`; those keys are printed after the
message, so a job's life can be followed across the site and the worker with one grep.
"""

import logging

CONTEXT_KEYS = ("job_id", "workflow_id", "run_id", "story_id", "page_id", "attempt", "user_id")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={record.getMessage()!r}",
        ]
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                parts.append(f"{key}={value}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
