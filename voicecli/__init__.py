"""voicecli: a terminal client, and a local server, for the AssemblyAI Voice Agent API."""

__version__ = "0.1.0"
