"""The local Voice Agent API server (`voicecli serve`)."""
