"""What the hot path needs to know about a key, frozen: safe to share between requests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    key_id: int
    key_prefix: str
    tenant_id: int
    tenant_name: str
    tenant_group: str
    tenant_timezone: str
    is_tenant_active: bool
    is_revoked: bool
    expires_at: datetime | None
    allowed_models: frozenset[str]  # empty: every model
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # empty: anywhere
    rpm: int | None
    tpm: int | None
    daily_cap_micros: int | None
    monthly_cap_micros: int | None
    mode: str
    allows_directives: bool = True

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    def allows_ip(self, ip: str | None) -> bool:
        if not self.allowed_networks:
            return True
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.allowed_networks)
