// The widgets' ESM entry (anywidget): one bundle for every podstack widget; the Python class
// names its view in ``_kind``. The views are also exported by name, so the JupyterLab extension
// renders the same views from its own models (anything that implements ModelLike).
import "uplot/dist/uPlot.min.css";
import "./widgets.css";
import type { ModelLike, RenderProps } from "./common";
import { initializeMetrics, minMaxIndices, renderMetrics } from "./metrics";
import { renderRuns } from "./runs";
import { renderLineage } from "./lineage";
import { renderArtifacts } from "./artifacts";
import { renderGpuStatus, renderSessions } from "./sessions";

export type { ModelLike, RenderProps };
export { renderMetrics, renderRuns, renderLineage, renderArtifacts, renderSessions, renderGpuStatus, initializeMetrics, minMaxIndices };

const VIEWS: Record<string, (props: RenderProps) => () => void> = {
  metrics: renderMetrics, runs: renderRuns, lineage: renderLineage, artifacts: renderArtifacts,
  sessions: renderSessions, "gpu-status": renderGpuStatus,
};

export default {
  initialize({ model }: { model: ModelLike }) {
    // live points reach the model even while no view is open, so a view opened later draws them all
    if (model.get("_kind") === "metrics") return initializeMetrics(model);
    return undefined;
  },
  render({ model, el }: RenderProps) {
    const kind = model.get("_kind");
    const view = VIEWS[kind];
    if (!view) {
      el.textContent = `podstack: no view named ${JSON.stringify(kind)} in this front end (reinstall podstack-jupyter)`;
      return undefined;
    }
    el.classList.add("psw-host");
    return view({ model, el });
  },
};
