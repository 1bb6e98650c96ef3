"""GET /models through the gateway: one upstream fetch for every client waiting, cached for a minute."""

from __future__ import annotations

from orchat.config import mask_key
from orchat.errors import UpstreamUnavailable
from orchat.gateway.clientside import ClientConnection
from orchat.gateway.modellist import NoModelList, rewrite_model_list
from orchat.gateway.state import Gateway
from orchat.gateway.statusmap import client_status_for
from orchat.wire.apierror import describe_error_body
from orchat.wire.framing import error_json


class ModelsFetch:
    """GET /models once for every client waiting on it; the answer is cached for a minute."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.waiters: list[ClientConnection] = []
        self.key = gw.settings.api_key  # of the upstream asked: masked if it echoes it
        self.status = 0
        self.parts: list[bytes] = []
        self.size = 0

    async def run(self) -> None:
        try:
            upstreams = self.gw.upstreams
            pool = self.gw.pool
            if upstreams is not None:
                pool = upstreams.pools[upstreams.pick() or 0]  # the first upstream up
                self.key = pool.api_key
            conn = pool.take_idle() or await pool.connect()
        except UpstreamUnavailable as err:
            self._reply(502, error_json(502, str(err), error_type="upstream_unavailable"))
            return
        conn.send(pool.models_request(), self)

    def cork(self) -> None:
        pass

    uncork = cork

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= self.gw.models_limit_bytes:
            self.parts.append(data)

    def on_end(self) -> None:
        body = b"".join(self.parts)
        self.parts = []
        if self.status != 200:
            status = client_status_for(self.status)
            message, kind, _ = describe_error_body(self.status, body)
            self._reply(status, error_json(status, message, error_type=kind or "upstream_error"))
            return
        if self.size > self.gw.models_limit_bytes:
            self._reply(502, error_json(502, "the upstream model list is larger than ORCHAT_CACHE_SIZE allows", error_type="upstream_error"))
            return
        try:
            payload = rewrite_model_list(body)  # one model at a time: json.loads of it all took 40x its size
        except NoModelList:
            self._reply(502, error_json(502, "the upstream answer has no model list", error_type="upstream_error"))
            return
        except (ValueError, RecursionError):
            self._reply(502, error_json(502, "the upstream model list is not JSON", error_type="upstream_error"))
            return
        del body
        key = self.key.encode() if len(self.key) >= 8 else b""
        if key and key in payload:  # an upstream that echoes the key in its model list
            payload = payload.replace(key, mask_key(self.key).encode())
        self.gw.cache_models(payload)
        self._reply(200, payload)

    def on_lost(self, reason: str, *, retryable: bool) -> None:
        self._reply(502, error_json(502, reason, error_type="upstream_error"))

    def _reply(self, status: int, body: bytes) -> None:
        self.gw.models_fetch = None
        for client in self.waiters:
            client.respond(status, body)
        self.waiters.clear()
