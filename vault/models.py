from django.db import models


class VaultState(models.Model):
    """One row: the salt of the key-encryption key and a check value that tells whether the
    password given at start is the one the credentials were sealed with.

    `generation` moves on every lock, unlock and rotation; each web process compares it with the
    one its key was checked against (at most once a second) and re-checks only then.
    `rotation_token` is the new key sealed under the previous one, so processes that still hold
    the previous key follow a rotation without a restart; locking the vault erases it."""

    salt = models.BinaryField(max_length=16)
    check_token = models.TextField()
    is_locked = models.BooleanField(default=False)  # by an operator: no process uses the key
    generation = models.PositiveBigIntegerField(default=0)
    rotation_token = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)

    def __repr__(self) -> str:
        return f"<VaultState generation={self.generation} is_locked={self.is_locked}>"

    def __str__(self) -> str:
        return f"vault ({'locked' if self.is_locked else 'open'}, generation {self.generation})"
