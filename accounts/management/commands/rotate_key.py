from accounts.selectors import api_key_get
from accounts.services import api_key_rotate
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Give an API key a new secret (printed once); the old one keeps working for --overlap seconds."

    def add_args(self, parser) -> None:
        parser.add_argument("key_id", type=int)
        parser.add_argument(
            "--overlap", type=int, default=0, metavar="S", help="seconds the old secret keeps working (default 0: it stops now)"
        )

    def run(self, *, key_id, overlap, **_):
        key, secret = api_key_rotate(key_id=api_key_get(key_id=key_id).pk, overlap_s=overlap)
        window = f"; the old secret works until {key.previous_expires_at.isoformat(timespec='seconds')}" if key.previous_expires_at else ""
        result = {
            "id": key.pk, "tenant_id": key.tenant_id, "key": secret, "prefix": key.prefix,
            "previous_expires_at": key.previous_expires_at.isoformat() if key.previous_expires_at else None,
        }
        return result, f"new secret for key {key.pk}: {secret} (shown once){window}"
