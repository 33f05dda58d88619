"""Rendering: plain lines, NDJSON and the rich live view."""
