"""The smallest urllib script that does what a one-shot `orchat` does: POST a streamed chat, print the deltas."""

import json
import os
import sys
import urllib.request

request = urllib.request.Request(
    os.environ["ORCHAT_API_BASE"] + "/chat/completions",
    data=json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": sys.argv[1]}], "stream": True}).encode(),
    headers={"Authorization": "Bearer " + os.environ["OPENROUTER_API_KEY"], "Content-Type": "application/json"},
)
with urllib.request.urlopen(request) as response:
    for line in response:
        if line.startswith(b"data: ") and line[6:].strip() != b"[DONE]":
            for choice in json.loads(line[6:]).get("choices") or []:
                sys.stdout.write((choice.get("delta") or {}).get("content") or "")
                sys.stdout.flush()
print()
