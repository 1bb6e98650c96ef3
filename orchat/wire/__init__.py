"""Wire: how ORCHAT talks HTTP to an OpenAI-compatible server (and RESP to Redis), shared by the CLI and the gateway.

transport (sockets, connections, timeouts, retries) with endpoint (base URL, proxies), tls,
httpresponse (an answer read from a socket) and retry (backoff, Retry-After); framing (HTTP/1.1
heads and bodies), sse (the event stream parser), openrouter (the API surface: the Client and its
requests) with answer (reading a chat answer) and apierror (error bodies), routing, credits, cache
(the model list), resp (a Redis RESP2 client for ORCHAT_SHARED_STATE). May import: the foundation
(orchat.errors, paths, fsutil, config). Imported by: chat, health, gateway, commands. Never imports
telemetry, chat, backup, health or gateway.
"""
