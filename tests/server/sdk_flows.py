"""Seed 000's registry flows, driven by the *official* Podstack SDK (run by
``test_official_sdk.py`` with the SDK's own virtualenv: it is also a top-level ``podstack``).

Reads PODSTACK_REGISTRY_URL / PODSTACK_API_KEY / PODSTACK_PROJECT_ID and a work folder (argv[1]);
prints one JSON object of what the SDK saw, for the test to check against the server.
"""

import json
import os
import shutil
import sys

from podstack import registry
from podstack.exceptions import AuthenticationError

work = sys.argv[1]
os.makedirs(work, exist_ok=True)
seen = {}

registry.init()
experiment = registry.set_experiment("sdk-experiment", description="driven by the official SDK")
again = registry.set_experiment("sdk-experiment")
seen["experiment"] = {"id": experiment.id, "same_again": again.id == experiment.id}

curve = os.path.join(work, "curve.txt")
with open(curve, "w") as f:
    f.write("epoch,loss\n" + "".join(f"{i},{1 / (i + 1)}\n" for i in range(50)))
data = os.path.join(work, "train.csv")
with open(data, "w") as f:
    f.write("text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(100)))

with registry.start_run(name="sdk-run", tags={"team": "nlp"}, system_metrics=False) as run:
    registry.log_params({"lr": 0.01, "layers": 3, "optimizer": "adam"})
    for step in range(5):
        registry.log_metrics({"loss": 1.0 / (step + 1), "accuracy": step / 10}, step=step)
    registry.set_tag("framework", "pytorch")
    registry.log_artifact(curve, artifact_path="plots/curve.txt")
    dataset = registry.log_dataset("train-set", path=data, context="training")
    registry.log_model({"weights": [1.0, 2.0, 3.0]}, artifact_path="model", framework="pickle")
seen["run_id"] = run.id
seen["dataset"] = {"id": dataset.id, "digest": dataset.digest, "name": dataset.name}

got = registry.get_run(run.id)
seen["run"] = {"status": got.status, "name": got.name, "experiment_id": got.experiment_id}
seen["params"] = {p.key: p.value for p in registry._get_client().get_run_params(run.id) if not p.key.startswith("_env.")}
seen["history"] = [[m.step, m.value] for m in registry.get_metric_history(run.id, "loss")]
seen["artifacts"] = sorted((a["path"], a["size"]) for a in registry._get_client().list_artifacts(run.id))
downloads = os.path.join(work, "downloads")
path = registry.download_artifact(run.id, "plots/curve.txt", downloads)
seen["downloaded_same"] = open(path).read() == open(curve).read()
seen["run_datasets"] = [(d.name, d.digest) for d in registry.get_run_datasets(run.id)]

# a second run on the same file: the same dataset record (deduplicated by digest)
with registry.start_run(name="sdk-run-2", system_metrics=False) as run2:
    registry.log_dataset("train-set", path=data, context="training")
    registry.log_metrics({"loss": 0.05}, step=0)
seen["dataset_dedup"] = registry.get_run_datasets(run2.id)[0].id == dataset.id

model = registry.register_model("sdk-model", run_id=run.id, description="from the SDK")
registry.register_model("sdk-model", run_id=run2.id)  # "already exists": the same model, a new version
registry.set_model_stage("sdk-model", version=1, stage="production")
registry.set_model_alias("sdk-model", alias="champion", version=2)
client = registry._get_client()
model = registry.get_model("sdk-model")
seen["model"] = {"name": model.name, "versions": [v.version for v in client.list_model_versions(model.id)]}
seen["by_alias"] = client.get_model_by_alias(model.id, "champion").version
seen["by_stage"] = client.get_model_version_by_stage(model.id, "production").version
lineage = registry.get_model_lineage(model.id)
seen["lineage"] = sorted((v["version"], v["run_id"], [d["name"] for d in v["datasets"]]) for v in lineage["versions"])
seen["transitions"] = [(t.from_stage, t.to_stage) for t in client.get_stage_transitions(model.id)]

# the model from the store alone: the local artifact folder is gone
shutil.rmtree(os.environ["PODSTACK_ARTIFACT_DIR"], ignore_errors=True)
seen["loaded"] = registry.load_model("sdk-model", stage="production")

comparison = registry.compare_runs([run.id, run2.id], metric_keys=["loss"])
seen["compare_keys"] = sorted(comparison) if isinstance(comparison, dict) else None
seen["search"] = sorted(r.name for r in registry.search_runs(experiment_id=experiment.id, status="completed"))
registry.update_run_notes(run.id, "best so far")
seen["notes"] = registry.get_run(run.id).notes
seen["experiments"] = [e.name for e in registry.list_experiments()]

registry.init(api_key="pjt_" + "x" * 12 + "_" + "y" * 43)
try:
    registry.set_experiment("refused")
    seen["bad_key"] = "accepted"
except AuthenticationError:
    seen["bad_key"] = "AuthenticationError"

print(json.dumps(seen, default=str))
