"""Gateway: `orchat --daemon`, the OpenAI-compatible HTTP server in front of the upstream.

daemon (lifecycle: signals, reload, drain), hooks (its logs, metrics, audit and health checks), server (the listening
socket), connection (one client socket: parsing, routing) with answers (its writing half) and
clientside (what a relay needs of it), relay (one chat request forwarded upstream) with usage
(an answer's usage found) and statusmap (upstream statuses as clients see them), modelsfetch
(GET /models once for every waiting client), upstream (the pool of upstream connections), state (what every connection shares),
sdnotify (systemd readiness and watchdog), supervisor (ORCHAT_WORKERS > 1: the workers' parent)
with workerslot (one worker's process and restart back-off) and notifyinbox (the workers' sd_notify socket),
workerstats (a worker's /metrics summed over the group), sharedledger (the Redis scripts, keys and replies), sharedstate (the daemon's
link to Redis: pipelined, host-local while down), sharedreport (`daemon tokens` from Redis), keymask (the key masked across reads),
events (whole SSE events in linear time), modellist (the model list rewritten one model at a
time), ledger (per-token usage in memory), hostledger and slotsfile (the same, shared by the
workers of an instance in a locked mmap), ledgerrules (the refusals both apply), ledgerfile
(where an instance's ledger lives, and which one is newest). Inside the wing: upstream, keymask,
events, modellist < state < statusmap, usage, clientside < relay, modelsfetch < answers < connection
< server < daemon < supervisor; workerslot, notifyinbox < supervisor; workerstats < daemon;
policy < ledgerrules < ledger, hostledger < ledgerfile < hooks < daemon; ledgerrules < sharedledger <
sharedstate < connection, state; sharedstate < sharedreport. May import: the foundation, wire, telemetry, health.
Imported by: commands.
"""
