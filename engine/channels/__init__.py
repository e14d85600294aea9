"""Message transports: `file` (append-only JSON lines and CSV), later `smtp` and `webhook`."""
