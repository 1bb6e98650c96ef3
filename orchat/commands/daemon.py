"""`orchat daemon` (`orchat --daemon`, bin/orchatd): serve the OpenAI-compatible gateway."""

from __future__ import annotations

from typing import Any

from orchat.config import load_settings, port_argument


def add_arguments(parser: Any) -> None:
    parser.add_argument("--addr", help="listen address (default ORCHAT_METRICS_ADDR, 127.0.0.1)")
    parser.add_argument("--port", type=port_argument, help="listen port (default ORCHAT_METRICS_PORT, 9090)")
    parser.add_argument("--instance-name", help="name in logs, metrics and the X-Orchat-Instance header (ORCHAT_INSTANCE_NAME)")
    parser.add_argument("--check", action="store_true", help="check the configuration (key, tokens, listen address) and exit")


def run(args: Any) -> int:
    flags = {"ORCHAT_METRICS_ADDR": args.addr, "ORCHAT_METRICS_PORT": args.port, "ORCHAT_INSTANCE_NAME": args.instance_name}
    settings = load_settings(flags)
    from orchat.gateway import daemon

    if args.check:
        tokens = daemon.check_settings(settings)
        locked = " (nobody gets in: the tokens file holds no token)" if settings.daemon_tokens_file and not tokens else ""
        where = f"{settings.metrics_addr}:{settings.metrics_port}" + (f" ({settings.workers} workers)" if settings.workers > 1 else "")
        print(f"ok: would listen on {where} with {len(tokens)} client token(s){locked}, upstream {settings.api_base}")
        return 0
    if settings.workers > 1:
        from orchat.gateway import supervisor

        return supervisor.run_supervisor(settings, flags)
    return daemon.run_daemon(settings, flags)
