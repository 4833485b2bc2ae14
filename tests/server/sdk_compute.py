"""The compute calls of the *official* Podstack SDK (``run_on_gpu``, ``@podstack.gpu``, the runner's
``submit`` / ``stream_output`` / ``status`` / ``cancel``), run by ``test_executions.py`` in the SDK's
own virtualenv against a live ``podstack server``.

``python sdk_compute.py MODE OUT.json [WORK]`` with PODSTACK_NOTEBOOK_SERVICE_URL, PODSTACK_API_KEY
and PODSTACK_PROJECT_ID set; writes what the SDK saw to OUT.json (the SDK prints its own progress
on stdout).
"""

import json
import os
import sys
import time

import podstack
from podstack.gpu_runner import PodstackExecutionError, get_runner

mode, out = sys.argv[1], sys.argv[2]
work = sys.argv[3] if len(sys.argv) > 3 else None
seen = {}


def facts(result):
    return {"status": result.status, "success": result.success, "output": result.output, "error": result.error,
            "gpu_type": result.gpu_type, "gpu_count": result.gpu_count, "gpu_seconds": result.gpu_seconds,
            "execution_id": result.execution_id}


CODE = """
import os, sys
print("hello from", os.environ.get("PODSTACK_GPU_TYPE"), "devices", os.environ.get("CUDA_VISIBLE_DEVICES"))
print("to stderr", file=sys.stderr)
total = sum(i * i for i in range(1000))
print("total", total)
"""

if mode in ("stream", "poll"):
    seen["result"] = facts(podstack.run_on_gpu(CODE, gpu="L40S", stream=mode == "stream"))


elif mode == "gpu":
    @podstack.gpu(type="T4", timeout=300)
    def train(n, scale=1.0, label="x"):
        import os
        return {"n": n, "sum": sum(range(n)) * scale, "label": label, "text": "two\nlines", "pair": (1, None),
                "devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpu": os.environ.get("PODSTACK_GPU_TYPE")}

    @podstack.gpu(type="L40S", count=2)
    def both():
        import os
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    @podstack.gpu(type="T4")
    def nothing():
        print("only printed")

    seen["train"] = train(n=10, scale=0.5, label="lr=3e-4")
    seen["positional"] = train(4)
    try:  # the SDK writes keyword arguments before positional ones: code that cannot compile
        seen["mixed"] = train(10, scale=0.5)
    except PodstackExecutionError as exc:
        seen["mixed"] = str(exc)
    seen["both"] = both()
    seen["nothing"] = nothing()


elif mode == "fail":
    seen["result"] = facts(podstack.run_on_gpu("print('before')\ndef step(x):\n    raise ValueError(f'bad input {x}')\n"
                                               "step(42)\n", gpu="T4", stream=False))

    @podstack.gpu(type="T4")
    def broken():
        return {}["missing"]

    try:
        broken()
        seen["decorated"] = "returned"
    except PodstackExecutionError as exc:
        seen["decorated"] = str(exc)
    seen["h100_result"] = facts(podstack.run_on_gpu("print(1)", gpu="H100", stream=False))


elif mode == "live":
    # the code cannot finish before this script sees its first line: the release file is made only then
    release = os.path.join(work, "release")
    runner = get_runner()
    submitted = runner.submit(f"import os, time\nprint('first', flush=True)\n"
                              f"while not os.path.exists({release!r}):\n    time.sleep(0.05)\nprint('second')\n",
                              gpu="L40S", timeout=120)
    seen["submitted"] = submitted
    events = []
    for event in runner.stream_output(submitted["execution_id"], show_output=False):
        events.append(event)
        if event.get("type") == "stdout" and "first" in event.get("content", "") and "status_at_first" not in seen:
            seen["status_at_first"] = runner.status(submitted["execution_id"])["status"]
            open(release, "w").close()
        if event.get("status") in ("completed", "failed", "timeout", "cancelled"):
            break
    seen["events"] = events
    seen["result"] = facts(runner.result(submitted["execution_id"]))


elif mode == "cancel":
    runner = get_runner()
    submitted = runner.submit("import time, os\nprint('pid', os.getpid(), flush=True)\n"
                              "while True:\n    print('tick', flush=True)\n    time.sleep(0.2)\n", gpu="L40S", count=2)
    execution_id = submitted["execution_id"]
    for event in runner.stream_output(execution_id, show_output=False):
        if event.get("type") == "stdout" and "tick" in event.get("content", ""):
            break
    started = time.monotonic()
    seen["cancel"] = runner.cancel(execution_id)
    seen["cancel_seconds"] = time.monotonic() - started
    seen["status"] = runner.status(execution_id)["status"]
    seen["result"] = facts(runner.result(execution_id))
    # both L40S are free again: a run that needs both of them goes through
    seen["after"] = facts(podstack.run_on_gpu("print('after')", gpu="L40S", count=2, stream=False))

elif mode == "pip":
    wheel = os.path.join(work, "tinypod-0.1-py3-none-any.whl")
    seen["result"] = facts(podstack.run_on_gpu("import tinypod, sys\nprint('tinypod', tinypod.VALUE)\n"
                                               "print(sys.prefix)", gpu="T4", pip=[wheel], stream=False))

else:
    raise SystemExit(f"unknown mode {mode!r}")

with open(out, "w") as f:
    json.dump(seen, f, default=str)
