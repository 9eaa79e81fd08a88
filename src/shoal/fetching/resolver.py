"""A resolver that maps chosen host names to fixed addresses (like curl's ``--resolve``)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult

from shoal.errors import ConfigError


class StaticResolver(AbstractResolver):
    """Answers for the host names in ``addresses`` (name to IP address) itself.

    A name written ``*.example`` matches every name ending in ``.example``. Other names go
    to ``fallback``; with no fallback they fail as DNS errors, which keeps a test or a
    sandboxed run from ever resolving a name it did not expect.
    """

    def __init__(
        self, addresses: Mapping[str, str], fallback: AbstractResolver | None = None
    ) -> None:
        self._addresses: dict[str, tuple[str, int]] = {}
        for name, address in addresses.items():
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError("resolve", f"{address!r} is not an IP address") from None
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            self._addresses[name.lower().rstrip(".")] = (str(ip), family)
        self._fallback = fallback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = self._lookup(host.lower().rstrip("."))
        if found is not None:
            address, found_family = found
            return [
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=found_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        if self._fallback is not None:
            return await self._fallback.resolve(host, port, family)
        raise OSError(socket.EAI_NONAME, f"host {host!r} is not in the resolve map")

    def _lookup(self, name: str) -> tuple[str, int] | None:
        found = self._addresses.get(name)
        while found is None and "." in name:
            name = name.split(".", 1)[1]
            found = self._addresses.get("*." + name)
        return found

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()
