from django.db import models


class VaultState(models.Model):
    """One row: the salt of the key-encryption key and a check value that tells whether the
    password given at start is the one the credentials were sealed with."""

    salt = models.BinaryField(max_length=16)
    check_token = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
