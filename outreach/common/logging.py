"""Structured logs: ``logger.info("message.sent", extra={"tenant_id": 1})`` prints key=value."""

import logging

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{key}={value!r}" for key, value in record.__dict__.items() if key not in _RESERVED
        )
        base = f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()}"
        text = f"{base} {fields}" if fields else base
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text
