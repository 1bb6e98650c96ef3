"""A small on-disk cache under ~/.cache/orchat, bounded by ORCHAT_CACHE_SIZE megabytes.

Entries are whole files written atomically; when the directory grows past the bound the
least recently modified entries are removed first. Used for the model list (OpenRouter sends
`Cache-Control: public, max-age=120` on /models).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from orchat import fsutil, paths
from orchat.errors import StorageError

BYTES_PER_MEGABYTE = 1024 * 1024


class Cache:
    def __init__(self, directory: Path | None = None, *, limit_bytes: int = 500 * BYTES_PER_MEGABYTE) -> None:
        self.directory = directory or paths.cache_dir() / "cache"
        self.limit_bytes = limit_bytes

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".json")

    def get(self, key: str, max_age_seconds: float) -> Any | None:
        """Return the cached value for KEY if younger than MAX_AGE_SECONDS, else None."""
        path = self._path(key)
        try:
            if time.time() - path.stat().st_mtime > max_age_seconds:
                return None
            entry = json.loads(fsutil.read_regular_file(path, self.limit_bytes))  # a planted FIFO is refused
        except (OSError, ValueError, RecursionError):
            return None
        return entry.get("value") if isinstance(entry, dict) and entry.get("key") == key else None

    def put(self, key: str, value: Any) -> None:
        """Store VALUE under KEY, then evict old entries past the size bound. Never raises."""
        data = json.dumps({"key": key, "value": value}, separators=(",", ":")).encode("utf-8")
        if len(data) > self.limit_bytes:
            return
        try:
            fsutil.atomic_write(self._path(key), data)
            self.evict()
        except StorageError:
            pass

    def evict(self) -> None:
        try:
            entries = [(e.stat().st_mtime, e.stat().st_size, Path(e.path)) for e in os.scandir(self.directory) if e.name.endswith(".json")]
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.limit_bytes:
                break
            try:
                path.unlink()
                total -= size
            except OSError:
                pass
