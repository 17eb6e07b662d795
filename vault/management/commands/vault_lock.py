from common.cli import JsonCommand
from vault.services import vault_lock


class Command(JsonCommand):
    help = "Lock the vault in every process: upstream credentials stay sealed until vault_unlock."

    def run(self, **_):
        state = vault_lock()
        return {"is_locked": True, "generation": state.generation}, "vault locked in every process (within a second)"
