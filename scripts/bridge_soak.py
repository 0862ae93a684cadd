#!/usr/bin/env python3
"""Bridge soak: messages from simulated boxes (real outbox and publisher) through a real
mosquitto into bridge instances sharing one group and a temporary PostgreSQL cluster, webhook
delivery on. Prints progress, then one JSON object (lost, unexpected, throughput_msg_s, ...);
exits 0 when nothing was lost or stored twice.

    .venv/bin/python scripts/bridge_soak.py [--messages 10000] [--boxes 4] [--bridges 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from support.postgres import TempCluster, find_bindir
    from support.soak import soak

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--boxes", type=int, default=4)
    p.add_argument("--bridges", type=int, default=3)
    a = p.parse_args()
    bindir = find_bindir()
    if bindir is None:
        print("error: PostgreSQL is not installed (install.sh --dev)", file=sys.stderr)
        return 2
    cluster = TempCluster(bindir).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bridge-soak-") as tmp:
            r = soak(
                Path(tmp),
                cluster.new_database(),
                messages=a.messages,
                boxes=a.boxes,
                bridges=a.bridges,
                progress=lambda s: print(s, file=sys.stderr, flush=True),
            )
    finally:
        cluster.stop()
    print(json.dumps(r))
    return 0 if r["lost"] == 0 and r["unexpected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
