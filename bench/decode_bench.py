"""Decode cost of one 20 ms audio frame, both roles, hardened vs unchecked (issue 12 item 4: the
safe decoder must stay within a few % of the plain one on the hot path; input.audio and
reply.audio arrive 50 times a second).

Run:  .venv/bin/python bench/decode_bench.py [--rounds 15] [--number 20000]

"unchecked" is the decoder as it was before the fix: ``json.loads`` then the same event mapping
(``client_event_from_dict`` / ``server_event_from_dict``). "safe" is ``decode_client_event`` /
``decode_server_event`` (depth, NaN/Infinity and number-range checks). Rounds are interleaved (CPU time) in
one process and the best of each is kept, so load on a shared machine hits both alike. The frame
is 960 bytes of PCM16 24 kHz (20 ms) -> 1,280 base64 characters.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
import timeit
from collections.abc import Callable

from voicecli.protocol.events import (
    client_event_from_dict,
    decode_client_event,
    decode_server_event,
    server_event_from_dict,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    audio = base64.b64encode(os.urandom(960)).decode("ascii")          # 20 ms PCM16 24 kHz
    client = json.dumps({"type": "input.audio", "audio": audio})
    server = json.dumps({"data": audio, "reply_id": "resp_" + "a" * 32, "type": "reply.audio",
                         "timestamp": 1790461856.2594728})
    pairs: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("server decodes input.audio", lambda: decode_client_event(client),
         lambda: client_event_from_dict(json.loads(client))),
        ("client decodes reply.audio", lambda: decode_server_event(server),
         lambda: server_event_from_dict(json.loads(server))),
    ]
    print(f"# .venv/bin/python bench/decode_bench.py --rounds {args.rounds} --number {args.number}")
    for label, safe, plain in pairs:
        best_safe = best_plain = float("inf")
        for _ in range(args.rounds):
            best_plain = min(best_plain, timeit.Timer(plain, timer=time.process_time).timeit(args.number) / args.number)
            best_safe = min(best_safe, timeit.Timer(safe, timer=time.process_time).timeit(args.number) / args.number)
        print(f"{label}: unchecked {best_plain * 1e6:.2f} us, safe {best_safe * 1e6:.2f} us "
              f"({(best_safe / best_plain - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
