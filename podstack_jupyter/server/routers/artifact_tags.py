"""Tagged artifact sets (``podstack.artifacts.upload(..., tag=...)``): a tag names the run whose
artifacts one upload stored. Tags are this project's REST store's extension of the API; a tag
is seen only through its run's project."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from ...errors import NotFoundError
from ...tracking import _validate as V
from ..deps import project
from ..state import ProjectContext
from ..wire import JSON, ArtifactTagIn

__all__ = ["router"]

router = APIRouter(tags=["artifact tags"])


@router.post("/artifact-tags", status_code=201, summary="Bind a tag to a run")
def create_tag(body: ArtifactTagIn, ctx: ProjectContext = Depends(project)):
    """`{"tag": {name, run_id, created_at}}`; a tag that exists is refused ("already exists"): it is never moved."""
    tag = ctx.store.create_artifact_tag(V.name("tag", body.name), V.identifier("run_id", body.run_id), time.time())
    return JSON({"tag": tag}, status_code=201)


@router.get("/artifact-tags", summary="Every tag of the project")
def list_tags(ctx: ProjectContext = Depends(project)):
    """`{"tags": [{name, run_id, created_at}]}`, by name."""
    return JSON({"tags": ctx.store.list_artifact_tags()})


@router.get("/artifact-tags/{name:text}", summary="One tag")
def get_tag(name: str, ctx: ProjectContext = Depends(project)):
    """`{"tag": {name, run_id, created_at}}` (404 if the project has no such tag)."""
    tag = ctx.store.get_artifact_tag(V.name("tag", name))
    if tag is None:
        raise NotFoundError(f"no artifact tag {name!r}")
    return JSON({"tag": tag})


@router.delete("/artifact-tags/{name:text}", summary="Remove a tag (the run and its files stay)")
def delete_tag(name: str, ctx: ProjectContext = Depends(project)):
    """`{"deleted": true|false}`: whether there was such a tag."""
    return JSON({"deleted": ctx.store.delete_artifact_tag(V.name("tag", name))})
