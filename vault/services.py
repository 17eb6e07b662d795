"""The process's vault: unlocked at first use with TOKENHUB_VAULT_PASSWORD, or, when that is
unset, with a key derived from SECRET_KEY (the embedded default: sealed at rest, no setup; a
loud warning at start, see docs/security.md).

Run-time operations, each a new `generation` of the one VaultState row that every process
notices within VAULT_STATE_CHECK_S:
- lock: no process uses the key (it is dropped from memory); channels that need a credential
  are skipped with that reason;
- unlock: each process checks its password again (one Argon2 derivation, then never again
  until the next generation: a locked vault costs nothing per request or table rebuild);
- rotate: every sealed secret's data key is sealed again under a key from the new password, in
  one transaction; processes holding the previous key follow through `rotation_token`, so
  nothing stops. Restart them with the new password at leisure.

Sealed secrets live in other apps' tables; each app names its fields with `sealed_field_add`
(in its AppConfig.ready), so the vault rotates them without importing those apps.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import F

from .crypto import SecretUnreadable, VaultLocked, derive_kek, rewrap, seal, unseal
from .models import VaultState

log = logging.getLogger(__name__)

_CHECK = "tokenhub-vault-check"
_lock = threading.Lock()
_kek: bytes | None = None
_kek_generation: tuple[int, int] | None = None  # (row, generation) the key in memory was checked against
_kek_salt: bytes | None = None  # the salt it was derived with
_failed: tuple[tuple[int, int], str] | None = None  # ((row, generation), reason): no new derivation until it moves
_runtime_password: str | None = None  # typed by an operator into this process (admin unlock)
_state: tuple[float, VaultState | None] = (0.0, None)
_sealed_fields: set[tuple[str, str]] = set()
_derivations = 0  # Argon2 runs in this process: a locked vault must not add one per rebuild


def sealed_field_add(*, model_label: str, field: str) -> None:
    _sealed_fields.add((model_label, field))


def is_key_derived_from_secret_key() -> bool:
    return not settings.TOKENHUB_VAULT_PASSWORD


def warn_if_key_derived_from_secret_key() -> None:
    if is_key_derived_from_secret_key():
        log.warning(
            "VAULT: TOKENHUB_VAULT_PASSWORD is not set, so upstream credentials are sealed with a key "
            "derived from SECRET_KEY. Anyone with SECRET_KEY and the database can read them, and "
            "without SECRET_KEY they are lost. Set TOKENHUB_VAULT_PASSWORD (then run vault_rotate) "
            "and back up both; see docs/security.md."
        )


def _password() -> str:
    return _runtime_password or settings.TOKENHUB_VAULT_PASSWORD or "secret-key:" + settings.SECRET_KEY


def _current_state() -> VaultState | None:
    global _state
    now = time.monotonic()
    if _state[1] is None or now - _state[0] >= settings.VAULT_STATE_CHECK_S:
        _state = (now, VaultState.objects.first())
    return _state[1]


def _derive(password: str, salt: bytes) -> bytes:
    global _derivations
    _derivations += 1
    return derive_kek(password, salt)


def _opens(kek: bytes, state: VaultState) -> bool:
    try:
        unseal(kek, state.check_token)
        return True
    except SecretUnreadable:
        return False


def _unlock() -> bytes:
    with _lock:
        state = _current_state()
        if state is None:
            state = _create()
        return _open(state)


def _create() -> VaultState:
    """The first sealed secret sets the vault up (or finds that another process just did)."""
    global _state
    with transaction.atomic():
        state = VaultState.objects.select_for_update().first()
        if state is None:
            if _kek is not None and _kek_salt is not None:
                # the row went away under a running process (a test database flushed): keep
                # the key it has, with the salt it was made from, instead of deriving anew
                state = VaultState.objects.create(salt=_kek_salt, check_token=seal(_kek, _CHECK))
            else:
                salt = os.urandom(16)
                kek = _derive(_password(), salt)
                state = VaultState.objects.create(salt=salt, check_token=seal(kek, _CHECK))
                _remember(kek, state)
    _state = (time.monotonic(), state)
    return state


def _open(state: VaultState) -> bytes:
    """The key for this generation of the vault: at most one Argon2 derivation per generation."""
    global _kek, _failed
    if state.is_locked:
        _kek = None
        raise VaultLocked("vault locked by an operator (vault_unlock opens it)")
    if _kek is not None and _kek_generation == (state.pk, state.generation):
        return _kek
    if _failed is not None and _failed[0] == (state.pk, state.generation):
        raise VaultLocked(_failed[1])
    candidates = []
    if _kek is not None:
        candidates.append(_kek)  # unlocked again after a lock, or nothing that matters changed
        if state.rotation_token:
            try:  # rotated by another process: the new key is sealed under ours
                candidates.insert(0, bytes.fromhex(unseal(_kek, state.rotation_token)))
            except SecretUnreadable:
                pass
    for kek in candidates:
        if _opens(kek, state):
            return _remember(kek, state)
    kek = _derive(_password(), bytes(state.salt))
    if not _opens(kek, state):
        _kek = None
        _failed = (
            (state.pk, state.generation),
            "vault locked: TOKENHUB_VAULT_PASSWORD does not match the one the credentials were sealed with",
        )
        raise VaultLocked(_failed[1])
    _failed = None
    return _remember(kek, state)


def _remember(kek: bytes, state: VaultState) -> bytes:
    global _kek, _kek_generation, _kek_salt
    _kek, _kek_generation, _kek_salt = kek, (state.pk, state.generation), bytes(state.salt)
    return kek


def secret_seal(*, plaintext: str) -> str:
    return seal(_unlock(), plaintext)


def secret_unseal(*, token: str) -> str:
    """Raises SecretUnreadable (VaultLocked, CorruptToken) when the vault cannot open it."""
    if not token:
        return ""
    return unseal(_unlock(), token)


def _state_for_update() -> VaultState:
    state = VaultState.objects.select_for_update().first()
    if state is None:
        raise VaultLocked("the vault has not been set up yet (it is created with the first sealed secret)")
    return state


def _check_password(state: VaultState, password: str) -> bytes:
    kek = _derive(password, bytes(state.salt))
    if not _opens(kek, state):
        raise VaultLocked("that password does not open the vault")
    return kek


@transaction.atomic
def vault_lock() -> VaultState:
    """Every process drops the key; sealed secrets stay unreadable until vault_unlock."""
    state = _state_for_update()
    VaultState.objects.filter(pk=state.pk).update(is_locked=True, rotation_token="", generation=F("generation") + 1)
    vault_refresh()
    return VaultState.objects.get(pk=state.pk)


@transaction.atomic
def vault_unlock(*, password: str) -> VaultState:
    """Raises VaultLocked (nothing changed) when the password is not the vault's."""
    global _runtime_password
    state = _state_for_update()
    _check_password(state, password)
    VaultState.objects.filter(pk=state.pk).update(is_locked=False, generation=F("generation") + 1)
    if password != (settings.TOKENHUB_VAULT_PASSWORD or "secret-key:" + settings.SECRET_KEY):
        _runtime_password = password  # this process can use it at once; others need it at start
    vault_refresh()
    return VaultState.objects.get(pk=state.pk)


@transaction.atomic
def vault_rotate(*, password: str, new_password: str) -> tuple[VaultState, int]:
    """Seal every secret's data key under a key from `new_password`. Returns the state and
    how many secrets were re-wrapped. Raises VaultLocked (nothing changed) on a wrong password,
    CorruptToken when a stored secret is damaged (nothing changed either)."""
    global _runtime_password
    if len(new_password) < 12:
        raise ValueError("the new vault password must be at least 12 characters")
    state = _state_for_update()
    old_kek = _check_password(state, password)
    salt = os.urandom(16)
    new_kek = _derive(new_password, salt)
    count = 0
    for label, field in sorted(_sealed_fields):
        model = apps.get_model(label)
        for pk, token in model.objects.select_for_update().exclude(**{field: ""}).values_list("pk", field):
            model.objects.filter(pk=pk).update(**{field: rewrap(old_kek, new_kek, token)})
            count += 1
    VaultState.objects.filter(pk=state.pk).update(
        salt=salt,
        check_token=seal(new_kek, _CHECK),
        rotation_token=seal(old_kek, new_kek.hex()),
        generation=F("generation") + 1,
    )
    _runtime_password = new_password
    vault_refresh()
    return VaultState.objects.get(pk=state.pk), count


def vault_status() -> dict:
    state = VaultState.objects.first()
    return {
        "exists": state is not None,
        "is_locked": bool(state and state.is_locked),
        "generation": state.generation if state else 0,
        "is_key_derived_from_secret_key": is_key_derived_from_secret_key(),
        "key_derivations": _derivations,  # in this process
    }


def vault_refresh() -> None:
    """Read the state again at the next use (after a change made by this process)."""
    global _state
    _state = (0.0, None)


def vault_forget() -> None:
    """Drop the key and all that was learnt from memory (tests; a restart)."""
    global _kek, _kek_generation, _kek_salt, _failed, _runtime_password, _state
    with _lock:
        _kek, _kek_generation, _kek_salt, _failed, _runtime_password, _state = None, None, None, None, None, (0.0, None)

