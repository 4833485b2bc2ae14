"""``podstack models ...``: inspect the model registry from a terminal.

::

    podstack models list
    podstack models show NAME            # versions with stage, run, name, where the files are, format; aliases
    podstack models lineage NAME         # which datasets trained each version, via which run

Each reads the store of the current settings or the one ``--store URL`` names, prints a
table, and prints JSON with ``--json``.
"""

from __future__ import annotations

from ..tracking._cli import arg, client_for, command_group, table, to_json

__all__ = ["add_parser"]


def _models_client(args):
    from .client import ModelRegistryClient

    return ModelRegistryClient(client_for(args))


def _stage_of(model) -> str:
    stages = {}
    for v in model.versions:
        stages.setdefault(v.stage, []).append(v.version)
    return " ".join(f"{stage}:{','.join(map(str, numbers))}" for stage, numbers in sorted(stages.items()))


def _models_list(args):
    models = _models_client(args).list_registered_models()
    if args.json:
        print(to_json(models))
        return 0
    rows = [[m.name, len(m.versions), m.latest_version.version if m.latest_version else "-", _stage_of(m) or "-",
             " ".join(f"{a}->v{n}" for a, n in sorted(m.aliases.items())) or "-",
             (m.updated_at or "-")[:19].replace("T", " ")] for m in models]
    print(table(rows, ["NAME", "VERSIONS", "LATEST", "STAGES", "ALIASES", "UPDATED (UTC)"], empty="no registered models"))
    return 0


def _models_show(args):
    model = _models_client(args).get_registered_model(args.name)
    if args.json:
        print(to_json(model))
        return 0
    lines = [f"model       {model.name}", f"id          {model.id}", f"description {model.description or '-'}",
             f"aliases     {' '.join(f'{a}->v{n}' for a, n in sorted(model.aliases.items())) or '-'}",
             f"category    {model.category or '-'}", f"owner       {model.owner or '-'}",
             f"tags        {' '.join(f'{k}={v}' if v else k for k, v in sorted(model.tags.items())) or '-'}", ""]
    latest = model.latest_version_number
    rows = [[f"v{v.version}", v.stage, v.run_id or "-", v.version_name + (" (latest)" if v.version == latest else ""),
             (v.source if v.run_id else v.uri) or "-", v.framework or v.model_format_name or "-",
             " ".join(v.aliases) or "-", (v.created_at or "-")[:19].replace("T", " ")] for v in reversed(model.versions)]
    lines.append(table(rows, ["VERSION", "STAGE", "RUN", "NAME", "SOURCE", "FORMAT", "ALIASES", "CREATED (UTC)"],
                       empty="no versions yet"))
    print("\n".join(lines))
    return 0


def _models_lineage(args):
    lineage = _models_client(args).get_model_lineage(args.name)
    if args.json:
        print(to_json(lineage))
        return 0
    lines = []
    for version in lineage["versions"]:
        lines.append(f"v{version['version']} · {version['stage']}")
        lines.append(f"  run: {version['run_name'] or '-'} ({version['run_id'] or 'no run'})")
        for ds in version["datasets"]:
            rows = ds["profile"].get("num_rows", "?")
            lines.append(f"  └─ {ds['name']}  {rows} rows  {ds['source'] or '-'}  sha256:{(ds['digest'] or '-')[:12]}")
    print("\n".join(lines) if lines else "no versions yet")
    return 0


def add_parser(subparsers) -> None:
    """``podstack models``."""
    command = command_group(subparsers, "models", "list and inspect registered models",
                            "List and inspect the model registry.")
    name = arg("name", metavar="NAME", help="model name (or id)")
    command("list", "registered models, by name", _models_list)
    command("show", "one model: its versions, stages and aliases", _models_show, name)
    command("lineage", "which datasets trained each version, via which run", _models_lineage, name)
