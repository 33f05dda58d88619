"""Audio: file decoding, resampling, jitter buffer, WAV recording, half-duplex gating."""
