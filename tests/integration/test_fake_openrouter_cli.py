"""The fake OpenRouter run by hand, as README "Development" tells a developer to (issue 13 item 14)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

from tests.conftest import REPO
from tests.fakes.openrouter import TEST_KEY

FAKE = str(REPO / "tests" / "fakes" / "openrouter.py")


def test_fake_openrouter_help_prints_usage_and_exits_0_without_a_traceback() -> None:
    proc = subprocess.run([sys.executable, FAKE, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith("usage: python3 tests/fakes/openrouter.py")
    assert "words_per_chunk" in proc.stdout
    assert "midstream-error" in proc.stdout


def test_fake_openrouter_refuses_a_word_count_that_is_not_a_number_with_exit_2() -> None:
    proc = subprocess.run([sys.executable, FAKE, "many"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "invalid int value: 'many'" in proc.stderr


def test_fake_openrouter_serves_its_printed_url_and_stops_on_sigterm() -> None:
    with subprocess.Popen([sys.executable, FAKE, "3"], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            request = urllib.request.Request(url + "/key", headers={"Authorization": f"Bearer {TEST_KEY}"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert "data" in json.load(response)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == -signal.SIGTERM
