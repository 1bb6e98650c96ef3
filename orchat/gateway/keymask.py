"""Masking the gateway's upstream key in bytes relayed to a client, across read boundaries.

An upstream that echoes the key (in an error, a debug field, a model's answer) may split it over
two TCP segments; replacing it per read would let both halves through. KeyMask holds back the
shortest tail that could still grow into the key and masks it once the next bytes arrive.
"""

from __future__ import annotations


class KeyMask:
    """Replace KEY with MASKED in a byte stream fed in arbitrary slices (no-op for an empty KEY)."""

    __slots__ = ("held", "key", "masked")

    def __init__(self, key: bytes, masked: bytes) -> None:
        self.key = key
        self.masked = masked
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        """Given the next bytes, return those safe to send now; a possible start of the key is held back."""
        key = self.key
        if not key:
            return data
        if self.held:
            data = self.held + data
            self.held = b""
        if key in data:
            data = data.replace(key, self.masked)
        # Only a suffix shorter than the key, starting with its first byte, can be a cut key:
        # at most len(key) - 1 candidates, each checked with one startswith (linear per read).
        first = key[:1]
        at = data.find(first, max(0, len(data) - len(key) + 1))
        while at >= 0:
            if key.startswith(data[at:]):
                self.held = data[at:]
                return data[:at]
            at = data.find(first, at + 1)
        return data

    def flush(self) -> bytes:
        """Return the bytes still held back (the stream ended: they were not the key)."""
        held, self.held = self.held, b""
        return held
