"""What the JupyterLab sidebar's kernel bridge costs a notebook that logs metrics.

``%load_ext podstack`` starts the bridge in the kernel. A listener on ``metrics.logged`` would make
every ``registry.log_metrics`` call publish an event (ratio 1.33 when the bridge had one); it has
none, and re-reads runs on a timer while one is active. This runs the same loop with and without
the bridge, interleaved round by round in one process, and prints the medians and their ratio
(with / without; 1.0: free)::

    python bench/bench_labext.py [--calls 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    os.environ["PODSTACK_HOME"] = tempfile.mkdtemp(prefix="podstack-bench-labext-")
    from podstack_jupyter import registry
    from podstack_jupyter.jupyter_ext._kernel import LabBridge

    def loop() -> float:
        with registry.start_run("bench"):
            started = time.perf_counter()
            for step in range(options.calls):
                registry.log_metrics({"loss": 0.5}, step=step)
            registry.flush()
            return (time.perf_counter() - started) / options.calls * 1e6

    plain, bridged = [], []
    for _ in range(options.rounds):
        plain.append(loop())
        bridge = LabBridge(None)  # subscribed, no front end attached: what every log call pays
        try:
            bridged.append(loop())
        finally:
            bridge.close()
    a, b = statistics.median(plain), statistics.median(bridged)
    print(f"log_metrics, {options.calls:,} calls x {options.rounds} rounds (medians):")
    print(f"  without the lab bridge   {a:7.2f} us/call")
    print(f"  with the lab bridge      {b:7.2f} us/call   ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
