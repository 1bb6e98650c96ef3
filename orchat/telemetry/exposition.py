"""The whole /metrics exposition: chat counters from the store, build info, process metrics, extras.

What a scrape shows comes from three places, put together by render_metrics():
  * the chat counters and histograms in the persistent store (orchat.telemetry.store), which every
    chat turn adds to, one-shot runs from cron and shells included;
  * live gauges of the rendering process: orchat_memory_bytes, orchat_build_info and the standard
    process_* family (orchat.telemetry.process, read from /proc/self);
  * extra families a long-running caller registers (the daemon's in-flight gauge, health checks).
The metric types and the text format live in orchat.telemetry.families, below this module and
the store, so neither imports the other.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Sequence

from orchat import __version__
from orchat.telemetry import process as procstats
from orchat.telemetry import store as metricstore
from orchat.telemetry.families import CONTENT_TYPE, Family, Gauge, render_families

__all__ = ["CONTENT_TYPE", "build_info_family", "render_metrics"]


def build_info_family() -> Gauge:
    python_version = ".".join(str(part) for part in sys.version_info[:3])
    info = Gauge("orchat_build_info", "ORCHAT version and Python version; the value is always 1.", ["version", "python_version"])
    info.set(1, version=__version__, python_version=python_version)
    return info


def render_metrics(
    extra_families: Iterable[Family] = (),
    *,
    models: Sequence[str] = (),
    store_path: Path | None = None,
    proc_root: str = "/proc",
    include_process: bool = True,
) -> bytes:
    """Return the whole exposition: chat metrics from the store, build info, process metrics, extras.

    MODELS are allow-listed model ids shown (at 0) even before their first request. STORE_PATH
    defaults to the store under paths.state_dir(). INCLUDE_PROCESS=False leaves out process_* and
    orchat_memory_bytes (node_exporter's textfile collector has its own process_* series).
    Raise StorageError when the store exists but cannot be read.
    """
    store = metricstore.load_store(store_path or metricstore.store_path())
    families: list[Family] = metricstore.chat_families(store, models)
    families.append(build_info_family())
    if include_process:
        stats = procstats.read_process_stats(proc_root)
        families.extend(procstats.memory_families(stats))
    families.extend(extra_families)
    if include_process:
        families.extend(procstats.process_families(stats))
    return render_families(families)
