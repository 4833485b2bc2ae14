"""The lineage graph of a registered model: datasets -> runs -> model versions.

Built from ``registry.get_model_lineage`` (which datasets trained each version, via which
run) and the model's record (stages and aliases). Each node carries the details the view
shows on hover (digest, row count, stage...) and when clicked (every field).
"""

from __future__ import annotations

import traitlets

from ..errors import InvalidArgumentError
from ._base import PodstackWidget, live_sender

__all__ = ["LineageGraph"]


def _short(digest: str) -> str:
    return digest[:12] if digest else ""


class LineageGraph(PodstackWidget):
    """``podstack.show_lineage(model)``: ``model`` is a name, an id, a :class:`RegisteredModel`
    or :class:`ModelVersion`, or a lineage dict from ``get_model_lineage``.

    ``nodes``: ``{"id", "kind" (dataset/run/version), "label", "sub", "badges", "details"}``;
    ``edges``: ``{"source", "target", "label"}``; ``selected``: the id of the clicked node.
    """

    _kind = traitlets.Unicode("lineage").tag(sync=True)
    model = traitlets.Unicode("").tag(sync=True)
    nodes = traitlets.List().tag(sync=True)
    edges = traitlets.List().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)

    def __init__(self, model, *, live: bool = True):
        super().__init__()
        self._model_ref = self._model_key(model)
        if live:
            self._subscribe("model", "_on_model_event")
        self.reload()

    @staticmethod
    def _model_key(model) -> str:
        if isinstance(model, dict) and "model_id" in model:
            return model["model_id"]
        for attribute in ("model_id", "id"):  # ModelVersion has model_id; RegisteredModel has id
            value = getattr(model, attribute, None)
            if isinstance(value, str) and (attribute == "model_id" or hasattr(model, "versions")):
                return value
        if isinstance(model, str) and model:
            return model
        raise InvalidArgumentError(f"show_lineage: model is a model name or id, a RegisteredModel, a ModelVersion "
                                   f"or a lineage dict, got {model!r}")

    def reload(self) -> None:
        """Read the model and its lineage again."""
        from .. import registry

        lineage = registry.get_model_lineage(self._model_ref)
        model = registry.get_model(lineage["model_id"])
        nodes, edges, seen = [], [], set()
        for version in sorted(lineage["versions"], key=lambda v: v["version"]):
            record = model.get_version(version["version"])
            version_id = f"version:{version['version']}"
            aliases = list(record.aliases) if record is not None else []
            nodes.append({"id": version_id, "kind": "version", "label": f"v{version['version']}",
                          "sub": version["stage"], "badges": [version["stage"], *[f"@{a}" for a in aliases]],
                          "details": {"model": model.name, "version": version["version"], "stage": version["stage"],
                                      "aliases": ", ".join(aliases) or "—",
                                      "framework": (record.framework if record else None) or "—",
                                      "created": (record.created_at if record else None) or "—",
                                      "source": (record.source if record else None) or "—",
                                      "run": version["run_name"] or "—"}})
            if not version["run_id"]:
                continue
            run_node = f"run:{version['run_id']}"
            if run_node not in seen:
                seen.add(run_node)
                nodes.append(self._run_node(registry, version["run_id"], version["run_name"]))
                for dataset in version["datasets"]:
                    dataset_node = f"dataset:{dataset['id']}"
                    if dataset_node not in seen:
                        seen.add(dataset_node)
                        nodes.append(self._dataset_node(dataset))
                    edges.append({"source": dataset_node, "target": run_node, "label": ""})
            edges.append({"source": run_node, "target": version_id, "label": ""})
        with self.hold_sync():
            self.model = model.name
            self.nodes = nodes
            self.edges = edges
            if self.selected and self.selected not in {n["id"] for n in nodes}:
                self.selected = ""

    def _summary(self) -> str:
        count = {k: sum(n["kind"] == k for n in self.nodes) for k in ("dataset", "run", "version")}
        return f"model {self.model}: {count['dataset']} dataset(s) -> {count['run']} run(s) -> {count['version']} version(s)"

    @staticmethod
    def _run_node(registry, run_id: str, run_name: str) -> dict:
        try:
            run = registry.get_run(run_id)
        except Exception:  # noqa: BLE001 - a version may outlive its run's record; still draw the edge
            return {"id": f"run:{run_id}", "kind": "run", "label": run_name or run_id[:8], "sub": "run not found",
                    "badges": [], "details": {"run id": run_id}}
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())[:6])
        params = ", ".join(f"{k}={v}" for k, v in sorted(run.params.items()) if not k.startswith("podstack."))
        duration = f"{run.duration:.1f} s" if run.duration is not None else "—"
        return {"id": f"run:{run_id}", "kind": "run", "label": run.name or run_id[:8], "sub": run.status,
                "badges": [run.status],
                "details": {"run id": run_id, "status": run.status, "started": run.start_time or "—",
                            "duration": duration, "params": params or "—", "metrics": metrics or "—"}}

    @staticmethod
    def _dataset_node(dataset: dict) -> dict:
        profile = dataset.get("profile") or {}
        rows = profile.get("num_rows")
        sub = " · ".join(x for x in (f"{rows:,} rows" if isinstance(rows, int) else "",
                                     f"sha256 {_short(dataset.get('digest', ''))}" if dataset.get("digest") else "") if x)
        schema = dataset.get("schema") or {}
        return {"id": f"dataset:{dataset['id']}", "kind": "dataset", "label": dataset["name"], "sub": sub,
                "badges": [dataset.get("source_type") or "local"],
                "details": {"name": dataset["name"], "digest": dataset.get("digest") or "—",
                            "rows": f"{rows:,}" if isinstance(rows, int) else "—",
                            "features": profile.get("num_features", "—"), "source": dataset.get("source") or "—",
                            "source type": dataset.get("source_type") or "—",
                            "schema": ", ".join(f"{c}: {t}" for c, t in list(schema.items())[:12]) or "—",
                            "logged": dataset.get("created_at") or "—"}}

    def _on_model_event(self, event) -> None:
        name = event.data.get("model")
        if name in (self.model, self._model_ref):
            live_sender.mark(self)

    def _flush_live(self) -> None:
        self.reload()

    def _on_view_select(self, content, _buffers) -> None:
        node = content.get("node") or ""
        if node and node not in {n["id"] for n in self.nodes}:
            raise InvalidArgumentError(f"no node {node!r} in this graph")
        self.selected = node
