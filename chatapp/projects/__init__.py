"""Projects: instructions and files every conversation in them starts from, private to their
owner or shared with the team; and pins, which keep conversations and projects at the top of
a person's sidebar."""

from __future__ import annotations
