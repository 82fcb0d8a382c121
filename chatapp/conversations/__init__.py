"""Conversations: the chat pages and the actions on them."""

from __future__ import annotations
