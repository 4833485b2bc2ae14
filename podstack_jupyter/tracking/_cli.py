"""``podstack runs ...`` and ``podstack experiments ...``: inspect the tracking store from a terminal.

::

    podstack runs list [--experiment NAME] [--status S] [--filter TEXT] [--order-by KEY] [--max N]
    podstack runs show RUN_ID            # params, metrics, tags, datasets, artifacts; an id prefix will do
    podstack runs history RUN_ID METRIC  # every point of one metric
    podstack runs compare RUN_ID RUN_ID... [--metrics loss,acc]
    podstack runs artifacts RUN_ID [--path DIR]
    podstack runs download RUN_ID ARTIFACT_PATH [DEST]
    podstack experiments list

Every command reads the store of the current settings (``PODSTACK_TRACKING_URI``,
``~/.podstack/config.toml``) or the one ``--store URL`` names, prints a table, and prints
JSON with ``--json``. Output helpers (tables, times, JSON) are shared with
``podstack models`` (:mod:`podstack_jupyter.models._cli`).
"""

from __future__ import annotations

import json
import math
import time

__all__ = ["add_parser", "command_group", "arg", "add_store_option", "client_for", "table", "when", "duration",
           "to_json", "resolve_run"]


# -- output ------------------------------------------------------------------------------------
def when(timestamp: float | None) -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS`` (``-`` for none)."""
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def duration(start: float | None, end: float | None) -> str:
    """``12.3s``, ``4m05s``, ``2h03m`` (to now while running)."""
    if start is None:
        return "-"
    seconds = max(0.0, (end if end is not None else time.time()) - start)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def table(rows: list[list], headers: list[str], empty: str = "nothing to show") -> str:
    """Rows as a plain-text table with a header line (``empty`` when there are no rows)."""
    if not rows:
        return empty
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return _plain(dataclasses.asdict(value))
    return value


def to_json(value) -> str:
    """Strict JSON (non-finite numbers as the strings ``NaN``, ``Infinity``)."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False, allow_nan=False)


# -- the store ---------------------------------------------------------------------------------
def add_store_option(parser) -> None:
    parser.add_argument("--store", metavar="URL", default=None,
                        help="tracking store to read (default: the configured one, e.g. PODSTACK_TRACKING_URI)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def client_for(args):
    """The TrackingClient for ``--store`` (or the configured store)."""
    from ..artifacts import open_store
    from ..config import settings
    from .client import TrackingClient
    from .store import current_store, open_store as open_tracking_store

    if args.store:
        return TrackingClient(open_tracking_store(args.store), open_store)
    settings()
    return TrackingClient(current_store(), open_store)


def resolve_run(client, run_id: str) -> dict:
    """The run with this id, or the only run whose id starts with it (4 characters at least)."""
    from ..errors import InvalidArgumentError, RunNotFoundError

    try:
        return client.get_run(run_id)
    except RunNotFoundError:
        if len(run_id) < 4 or not all(c in "0123456789abcdef-" for c in run_id.lower()):
            raise
        found = client.search_runs(filter=f"id LIKE '{run_id.lower()}%'", max_results=2)
        if len(found) == 1:
            return found[0]
        if found:
            raise InvalidArgumentError(f"run id prefix {run_id!r} matches several runs; give more of it") from None
        raise


# -- commands ----------------------------------------------------------------------------------
def _run_row(run: dict, experiments: dict) -> list:
    metrics = " ".join(f"{k}={_number(v)}" for k, v in sorted(run["metrics"].items()))
    return [run["id"], _clip(run["name"] or "", 30), run["status"], _clip(experiments.get(run["experiment_id"], "?"), 20),
            when(run["start_time"]), duration(run["start_time"], run["end_time"]), _clip(metrics, 48)]


def _run_json(run: dict) -> dict:
    from ._entities import iso

    return {**run, "start_time": iso(run["start_time"]), "end_time": iso(run["end_time"])}


def _experiment_ids(client, name_or_id):
    from ..errors import ExperimentNotFoundError

    if name_or_id is None:
        return None
    try:
        return [client.get_experiment_by_name(name_or_id).id]
    except ExperimentNotFoundError:
        return [client.get_experiment(name_or_id).id]


def _runs_list(args):
    client = client_for(args)
    runs = client.search_runs(experiment_ids=_experiment_ids(client, args.experiment), statuses=args.status,
                              filter=args.filter, order_by=args.order_by, max_results=args.max)
    if args.json:
        print(to_json([_run_json(r) for r in runs]))
        return 0
    experiments = {e.id: e.name for e in client.list_experiments()}
    print(table([_run_row(r, experiments) for r in runs],
                ["ID", "NAME", "STATUS", "EXPERIMENT", "STARTED", "DURATION", "METRICS"], empty="no runs"))
    return 0


def _runs_show(args):
    client = client_for(args)
    run = resolve_run(client, args.run_id)
    datasets = client.get_run_datasets(run["id"])
    artifacts = client.list_artifacts(run["id"])
    if args.json:
        print(to_json({**_run_json(run), "datasets": datasets, "artifacts": artifacts}))
        return 0
    experiment = client.get_experiment(run["experiment_id"]).name
    lines = [f"run        {run['id']}", f"name       {run['name']}", f"status     {run['status']}",
             f"experiment {experiment}", f"started    {when(run['start_time'])}",
             f"ended      {when(run['end_time'])}", f"duration   {duration(run['start_time'], run['end_time'])}"]
    if run["parent_run_id"]:
        lines.append(f"parent     {run['parent_run_id']}")
    for title, values in (("params", run["params"]), ("metrics (latest)", run["metrics"]), ("tags", run["tags"])):
        lines += ["", title + ":"]
        lines += [f"  {k} = {_number(v)}" for k, v in sorted(values.items())] or ["  (none)"]
    lines += ["", "datasets:"]
    lines += [f"  {d.name} ({d.context}) {d.source or '-'} sha256:{(d.digest or '-')[:12]}" for d in datasets] or \
        ["  (none)"]
    lines += ["", "artifacts:"]
    lines += [f"  {a['path']}  {a['size']:,} B" for a in artifacts] or ["  (none)"]
    print("\n".join(lines))
    return 0


def _runs_history(args):
    client = client_for(args)
    run = resolve_run(client, args.run_id)
    history = client.get_metric_history(run["id"], args.metric)
    if args.json:
        print(to_json([{"step": p.step, "value": p.value, "timestamp": p.timestamp} for p in history]))
        return 0
    print(table([[p.step, _number(p.value), when(p.timestamp)] for p in history], ["STEP", "VALUE", "LOGGED"],
                empty=f"run {run['id']} has no points of metric {args.metric!r}"))
    return 0


def _runs_compare(args):
    client = client_for(args)
    ids = [resolve_run(client, r)["id"] for r in args.run_ids]
    keys = [k for k in args.metrics.split(",") if k] if args.metrics else None
    rows = client.compare_runs(ids, keys)
    if args.json:
        print(to_json(rows))
        return 0
    metric_keys = keys or sorted({k for r in rows for k in r["metrics"]})
    param_keys = sorted({k for r in rows for k in r["params"] if not k.startswith("podstack.")})  # not our own
    body = [[r["run_id"][:8], _clip(r["name"] or "", 24), r["status"]]
            + ["-" if r["metrics"].get(k) is None else _number(r["metrics"][k]) for k in metric_keys]
            + [_clip(r["params"].get(k, "-"), 16) for k in param_keys] for r in rows]
    print(table(body, ["RUN", "NAME", "STATUS"] + metric_keys + [f"params.{k}" for k in param_keys]))
    return 0


def _runs_artifacts(args):
    client = client_for(args)
    run = resolve_run(client, args.run_id)
    artifacts = client.list_artifacts(run["id"], args.path)
    if args.json:
        print(to_json(artifacts))
        return 0
    print(table([[a["path"], f"{a['size']:,}", a["etag"][:12], a["last_modified"][:19].replace("T", " ")]
                 for a in artifacts], ["PATH", "BYTES", "SHA256", "UPLOADED (UTC)"], empty="no artifacts"))
    return 0


def _runs_download(args):
    client = client_for(args)
    run = resolve_run(client, args.run_id)
    written = client.download_artifact(run["id"], args.artifact_path, args.dest)
    print(to_json({"path": written}) if args.json else written)
    return 0


def _experiments_list(args):
    client = client_for(args)
    experiments = client.list_experiments()
    if args.json:
        print(to_json(experiments))
        return 0
    print(table([[e.id, e.name, (e.created_at or "-")[:19].replace("T", " ")] for e in experiments],
                ["ID", "NAME", "CREATED (UTC)"], empty="no experiments"))
    return 0


def command_group(subparsers, name: str, help: str, description: str):
    """``podstack NAME`` with subcommands (printing its help when given none); returns their parser maker."""
    group = subparsers.add_parser(name, help=help, description=description)
    commands = group.add_subparsers(title="commands", metavar="COMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 2)

    def command(command_name: str, command_help: str, func, *arguments):
        """A subcommand: ``arguments`` are ``(args, kwargs)`` of ``add_argument``; ``--store``/``--json`` added."""
        parser = commands.add_parser(command_name, help=command_help)
        for args, kwargs in arguments:
            parser.add_argument(*args, **kwargs)
        add_store_option(parser)
        parser.set_defaults(func=func)
        return parser

    return command


def arg(*args, **kwargs) -> tuple:
    return args, kwargs


_RUN_ID = arg("run_id", metavar="RUN_ID", help="a run id (or the start of one)")


def add_parser(subparsers) -> None:
    """``podstack runs`` and ``podstack experiments``."""
    command = command_group(subparsers, "runs", "list and inspect tracked runs",
                            "List and inspect the runs of the tracking store.")
    command("list", "runs, newest first", _runs_list,
            arg("--experiment", metavar="NAME_OR_ID", help="only runs of this experiment"),
            arg("--status", choices=["running", "completed", "failed", "killed"], help="only runs in this status"),
            arg("--filter", metavar="TEXT", help='e.g. "metrics.accuracy > 0.9 and params.lr < 0.01"'),
            arg("--order-by", metavar="KEY", help='e.g. "metrics.accuracy DESC" (default: newest first)'),
            arg("--max", type=int, default=50, metavar="N", help="at most N runs (default 50)"))
    command("show", "one run: params, metrics, tags, datasets, artifacts", _runs_show, _RUN_ID)
    command("history", "every point of one metric of a run", _runs_history, _RUN_ID, arg("metric", metavar="METRIC"))
    command("compare", "runs side by side: latest metrics and params", _runs_compare,
            arg("run_ids", metavar="RUN_ID", nargs="+"), arg("--metrics", metavar="A,B", help="only these metrics"))
    command("artifacts", "the artifact files of a run", _runs_artifacts, _RUN_ID,
            arg("--path", metavar="DIR", help="only under this artifact folder"))
    command("download", "copy an artifact file or folder of a run here", _runs_download, _RUN_ID,
            arg("artifact_path", metavar="ARTIFACT_PATH"),
            arg("dest", metavar="DEST", nargs="?", default=".", help="folder to copy into (default: .)"))

    command = command_group(subparsers, "experiments", "list experiments", "The experiments of the tracking store.")
    command("list", "every experiment, oldest first", _experiments_list)
