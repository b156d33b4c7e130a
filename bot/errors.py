"""Errors the core raises for the Discord layer to render."""

from __future__ import annotations


class UserError(Exception):
    """Something the member can fix or should know; `message` is shown to them as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(UserError):
    """The request was refused before anything was spent."""


class EditFailed(UserError):
    """The API call failed; the member was not charged."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
