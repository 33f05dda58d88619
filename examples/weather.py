#!/usr/bin/env python3
"""An example voicecli tool: made-up, deterministic weather for a city (no network).

As a command tool (``command = ["python3", "weather.py"]``) it reads the call's arguments as one
JSON object on stdin and prints the result as JSON on stdout; a bad call prints one line on stderr
and exits 1 (voicecli sends that line to the agent as an error result). As a callable tool
(``callable = "weather:get_weather"``) voicecli calls ``get_weather(city=...)`` directly.
"""

from __future__ import annotations

import json
import sys

CONDITIONS = ("sunny", "partly cloudy", "overcast", "light rain", "windy")


def get_weather(city: str) -> dict[str, object]:
    """The weather for ``city``: the same answer every time for the same city."""
    if not isinstance(city, str) or not city.strip():
        raise ValueError("city must be a non-empty string, e.g. Paris")
    name = city.strip().title()
    seed = sum(ord(c) for c in name.lower())
    temp_c = 5 + seed % 23
    conditions = CONDITIONS[seed % len(CONDITIONS)]
    return {"city": name, "temp_c": temp_c, "conditions": conditions,
            "summary": f"{conditions}, {temp_c} degrees Celsius"}


def main() -> int:
    try:
        arguments = json.load(sys.stdin)
        print(json.dumps(get_weather(arguments.get("city", ""))))
    except (ValueError, AttributeError) as exc:
        print(f"get_weather: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
