"""Sharing a conversation: a read-only snapshot behind a link, for the team (or, where an
admin allows, for anyone), which a teammate can continue in their own chats."""

from __future__ import annotations
