"""Readable text for the same objects the widgets draw: what a terminal IPython (or any
front end without widgets) shows for a run, a metric history, a model or a lineage."""

from __future__ import annotations

import math

__all__ = ["run_text", "history_text", "model_text", "version_text", "lineage_text", "sparkline", "size_text"]

_BARS = "▁▂▃▄▅▆▇█"


def size_text(count) -> str:
    count = float(count or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def sparkline(values, width: int = 40) -> str:
    """The shape of a series in ``width`` block characters (each the mean of its slice)."""
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [sum(chunk) / len(chunk) for chunk in
                  (values[int(i * step):max(int((i + 1) * step), int(i * step) + 1)] for i in range(width))]
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(_BARS[min(len(_BARS) - 1, int((v - low) / span * len(_BARS)))] for v in values)


def _pairs(mapping: dict, limit: int = 8) -> str:
    items = [(k, v) for k, v in mapping.items() if not str(k).startswith("podstack.")]
    shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items[:limit])
    return shown + (f"  (+{len(items) - limit} more)" if len(items) > limit else "")


def run_text(run) -> str:
    duration = f" · {run.duration:.1f} s" if run.duration is not None else ""
    lines = [f"Run {run.name!r} · {run.status}{duration} · id {run.id}"]
    if any(not str(k).startswith("podstack.") for k in run.params):
        lines.append(f"  params   {_pairs(run.params)}")
    if run.metrics:
        lines.append(f"  metrics  {_pairs(run.metrics)}")
    if run.tags:
        lines.append(f"  tags     {_pairs(run.tags)}")
    return "\n".join(lines)


def history_text(history) -> str:
    n = len(history)
    if not n:
        return f"{history.key!r} of run {history.run_id[:8]}: no points"
    values = list(history.values)
    finite = [v for v in values if math.isfinite(v)]
    stats = (f"min {min(finite):.4g} · max {max(finite):.4g} · last {values[-1]:.4g}" if finite
             else "no finite values")
    return (f"{history.key!r} of run {history.run_id[:8]}: {n:,} points, steps {history.steps[0]}–{history.steps[-1]}\n"
            f"  {sparkline(values)}  {stats}")


def version_text(version) -> str:
    aliases = "".join(f" @{a}" for a in version.aliases)
    run = f" · run {version.run_id[:8]}" if version.run_id else ""
    framework = f" · {version.framework}" if version.framework else ""
    return f"{version.name} v{version.version} · {version.stage}{aliases}{run}{framework}"


def model_text(model) -> str:
    lines = [f"Model {model.name!r} · {len(model.versions)} version(s)"]
    lines += ["  " + version_text(v) for v in reversed(model.versions)]
    return "\n".join(lines)


def lineage_text(lineage: dict) -> str:
    lines = [f"Lineage of model {lineage.get('model_id')}"]
    for version in lineage.get("versions", []):
        run = version.get("run_name") or version.get("run_id") or "no run"
        lines.append(f"  v{version['version']} · {version['stage']}  ← run {run}")
        for dataset in version.get("datasets", []):
            rows = (dataset.get("profile") or {}).get("num_rows")
            extra = " · ".join(x for x in ((f"{rows:,} rows" if isinstance(rows, int) else ""),
                                           (f"sha256 {dataset['digest'][:12]}" if dataset.get("digest") else "")) if x)
            lines.append(f"      ← dataset {dataset['name']}" + (f" ({extra})" if extra else ""))
    return "\n".join(lines)
