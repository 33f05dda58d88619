"""Wiring: transport, conversations, the ask and chat runners."""
