"""Password hashing with Argon2id (argon2-cffi)."""

from __future__ import annotations

import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8


class Passwords:
    """Hash and check passwords; the parameters default to argon2-cffi's recommended profile."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self.hasher = hasher or argon2.PasswordHasher()
        # A hash nobody's password matches, checked when the username is unknown so that a
        # failed sign-in takes as long whether or not the user exists.
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def fast(cls) -> Passwords:
        """Return cheap hashing, for tests only (Argon2id with minimal cost)."""
        return cls(argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """Return whether ``password`` matches ``stored``; an empty hash matches nothing."""
        if not stored:
            self.verify(self._decoy, password)
            return False
        try:
            return bool(self.hasher.verify(stored, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def decoy(self, password: str) -> None:
        """Spend the time a real check takes (for unknown usernames)."""
        self.verify(self._decoy, password)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return bool(self.hasher.check_needs_rehash(stored))
        except InvalidHashError:
            return True


def check_strength(password: str) -> str | None:
    """Return why ``password`` is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    return None


def generate() -> str:
    """Return a new random password (about 120 bits), for generated accounts."""
    return secrets.token_urlsafe(15)
