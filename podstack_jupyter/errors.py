"""Every exception podstack raises, in one tree.

``PodstackError`` is the root; catch it to handle anything this package raises.
The names of seed 000 (``AuthenticationError``, ``GPUNotAvailableError``,
``RateLimitError``, ``ExecutionTimeoutError``) are kept; the rest say what went
wrong in the notebook's own terms.

    PodstackError
    ├── ConfigurationError          bad settings (init(), PODSTACK_* variables, config file)
    ├── AuthenticationError         the server refused the API key
    ├── RateLimitError              the server asked us to slow down (.retry_after seconds)
    ├── GPUNotAvailableError        the requested GPUs cannot be had (.available lists what can)
    ├── EnvironmentBuildError       a --pip / --requirements environment failed to build
    ├── SerializationError          a variable cannot travel to or from a session (.name, .type_name)
    ├── ExecutionTimeoutError       a remote execution ran past its timeout (.execution_id)
    ├── RemoteExecutionError        the remote code raised (.ename, .evalue, .traceback)
    ├── SessionDiedError            the remote kernel died; its state is lost
    ├── CellSyntaxError             a %%gpu cell does not parse; nothing was sent
    ├── StoreError                  the tracking store could not do a call (locked, unreachable); it wrote nothing
    ├── PermissionDeniedError       a GPU session asked for more than logging into its cell's run
    ├── InvalidArgumentError        (also a ValueError) an argument is out of range or malformed
    │   └── DuplicateError          a name that must be unique is taken (a model, a version name, a tag)
    ├── NotFoundError               (also a LookupError) something asked for does not exist
    │   ├── ExperimentNotFoundError
    │   ├── RunNotFoundError
    │   ├── ModelNotFoundError
    │   └── ArtifactNotFoundError
    ├── ArtifactIntegrityError      a stored blob or a download does not match its recorded digest
    │   ├── TreeHashMismatchError   an unpacked artifact's git-tree-sha1 is not the one Artifacts.toml names
    │   └── UnsafeArchiveError      a tarball would write outside its folder (absolute path, '..', escaping link)
    ├── ArtifactInstallError        an Artifacts.toml artifact could not be installed from any of its urls
    ├── ModelSourceError            a model's files could not be had from their source (the hub, S3, a path)
    ├── ArtifactsUploadError        podstack.artifacts.upload() stored nothing under the tag asked (.cause)
    └── ArtifactsDownloadError      podstack.artifacts.download() could not fetch what was asked (.cause)
"""

from __future__ import annotations

__all__ = [
    "PodstackError",
    "ConfigurationError",
    "AuthenticationError",
    "RateLimitError",
    "GPUNotAvailableError",
    "EnvironmentBuildError",
    "SerializationError",
    "ExecutionTimeoutError",
    "RemoteExecutionError",
    "SessionDiedError",
    "CellSyntaxError",
    "StoreError",
    "PermissionDeniedError",
    "InvalidArgumentError",
    "DuplicateError",
    "NotFoundError",
    "ExperimentNotFoundError",
    "RunNotFoundError",
    "ModelNotFoundError",
    "ArtifactNotFoundError",
    "ArtifactIntegrityError",
    "TreeHashMismatchError",
    "UnsafeArchiveError",
    "ArtifactInstallError",
    "ModelSourceError",
    "ArtifactsUploadError",
    "ArtifactsDownloadError",
]


class PodstackError(Exception):
    """Root of every podstack error. ``.message`` holds the human-readable text, with the secrets
    URLs carry masked (``config.redact``: passwords, tokens)."""

    def __init__(self, message: str = "", **details):
        if "://" in message or "=" in message:  # a URL's password or token never reaches a message
            from .config import redact

            message = redact(message)
        super().__init__(message)
        self.message = message
        for key, value in details.items():
            setattr(self, key, value)

    def _render_traceback_(self):
        # IPython shows this instead of podstack's internal frames: these errors are
        # deliberate, and their message says what went wrong and how to fix it.
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]


class ConfigurationError(PodstackError):
    """A setting (init() argument, PODSTACK_* variable or config file entry) is invalid."""


class AuthenticationError(PodstackError):
    """The server refused the API key: check ``podstack.init(api_key=...)`` or PODSTACK_API_KEY."""


class RateLimitError(PodstackError):
    """The server is rate limiting this client; retry after ``retry_after`` seconds."""

    def __init__(self, message: str = "", retry_after: float | None = None):
        super().__init__(message, retry_after=retry_after)


class GPUNotAvailableError(PodstackError):
    """The requested GPUs cannot be allocated. ``available`` describes what can be."""

    def __init__(self, message: str = "", available: dict | None = None):
        super().__init__(message, available=available or {})


class EnvironmentBuildError(PodstackError):
    """Building a session's package environment (``pip=``/``requirements=``) failed."""


class SerializationError(PodstackError):
    """A variable cannot be sent to (or brought back from) a GPU session."""

    def __init__(self, message: str = "", name: str | None = None, type_name: str | None = None):
        super().__init__(message, name=name, type_name=type_name)


class ExecutionTimeoutError(PodstackError):
    """A remote execution ran longer than its ``timeout``; the remote was interrupted."""

    def __init__(self, message: str = "", execution_id: str | None = None, timeout: float | None = None):
        super().__init__(message, execution_id=execution_id, timeout=timeout)


class RemoteExecutionError(PodstackError):
    """The code raised inside the remote session.

    ``ename``/``evalue`` are the remote exception's type and message and
    ``traceback`` the remote traceback lines (with the cell's own line numbers).
    In IPython the remote traceback is what is shown.
    """

    def __init__(self, ename: str, evalue: str, traceback: list[str] | None = None, execution_id: str | None = None):
        super().__init__(f"{ename}: {evalue}", ename=ename, evalue=evalue,
                         traceback=list(traceback or []), execution_id=execution_id)

    def _render_traceback_(self):  # IPython shows this instead of the local frames
        return self.traceback or [self.message]


class SessionDiedError(PodstackError):
    """The remote kernel died (killed, out of memory); the session and its variables are gone."""


class CellSyntaxError(PodstackError):
    """A cell sent to a GPU session does not parse. Found before anything was sent."""

    def __init__(self, error: SyntaxError, line_offset: int = 0):
        lineno = (error.lineno or 0) + line_offset
        super().__init__(f"{error.msg} (line {lineno} of the cell)")
        self.msg, self.lineno, self.offset, self.text = error.msg, lineno, error.offset, error.text

    def _render_traceback_(self):
        lines = [f"\x1b[0;31mSyntaxError\x1b[0m: {self.message}; nothing was sent to the GPU session"]
        if self.text:
            lines += ["    " + self.text.rstrip("\n"), "    " + " " * max(0, (self.offset or 1) - 1) + "^"]
        return lines


class StoreError(PodstackError):
    """The tracking store could not complete a call: the database stayed locked by another process
    past the wait, the server is unreachable, or the database refused the data. The call wrote
    nothing (its transaction was rolled back); the message says what to do."""


class PermissionDeniedError(PodstackError):
    """Refused: the caller may not do this. A GPU session may log into the run of the cell it runs
    in (and runs it starts inside it) and read; moving models between stages, ending or renaming
    the notebook's runs, writing into other runs is the notebook's to do. Nothing was changed."""


class InvalidArgumentError(PodstackError, ValueError):
    """An argument is malformed or out of range; the message names it and the valid choices."""


class DuplicateError(InvalidArgumentError):
    """A name that must be unique is already taken: a registered model, a version name of a model,
    an artifact tag. The message says "already exists" and names it; nothing was written."""


class NotFoundError(PodstackError, LookupError):
    """Something looked up by name or id does not exist."""


class ExperimentNotFoundError(NotFoundError):
    """No experiment with that name or id."""


class RunNotFoundError(NotFoundError):
    """No run with that id."""


class ModelNotFoundError(NotFoundError):
    """No registered model (or version / stage / alias of it) matches."""


class ArtifactNotFoundError(NotFoundError):
    """The artifact is in neither the artifact store nor the local cache."""


class ArtifactIntegrityError(PodstackError):
    """A stored blob's content does not match its recorded sha256 digest."""


class TreeHashMismatchError(ArtifactIntegrityError):
    """An unpacked artifact hashes to another ``git-tree-sha1`` than ``Artifacts.toml`` names
    (``.expected``, ``.calculated``). Julia's Pkg calls this "Tree Hash Mismatch"; nothing is installed."""

    def __init__(self, message: str = "", expected: str | None = None, calculated: str | None = None):
        super().__init__(message, expected=expected, calculated=calculated)


class UnsafeArchiveError(ArtifactIntegrityError):
    """A tarball holds a member that would land outside the folder it is unpacked into (an
    absolute path, a ``..`` component, a link escaping the tree) or that is not a file, folder
    or symlink (``.member``). Nothing of it is installed."""

    def __init__(self, message: str = "", member: str | None = None):
        super().__init__(message, member=member)


class ArtifactInstallError(PodstackError):
    """An ``Artifacts.toml`` artifact (``.name``) could not be installed: every download url
    failed. ``.attempts`` lists ``(url, error)`` for each url tried, in order."""

    def __init__(self, message: str = "", name: str | None = None, attempts: list | None = None):
        super().__init__(message, name=name, attempts=list(attempts or []))


class ModelSourceError(PodstackError):
    """A model's files could not be had from where they are: the Hugging Face hub (unreachable, no
    such repo, revision or file; offline and not cached), an S3 location or a local path. The
    message says where and why; nothing was registered."""


class ArtifactsUploadError(PodstackError):
    """``podstack.artifacts.upload()`` could not store the files (no active run and no tag, a tag
    that is taken, a path that does not exist, the store failed). ``.cause`` is the error behind it,
    if any. A tag is only ever bound to a complete upload."""

    def __init__(self, message: str = "", cause: BaseException | None = None):
        super().__init__(message, cause=cause)


class ArtifactsDownloadError(PodstackError):
    """``podstack.artifacts.download()`` could not fetch the files (no run or tag given, an unknown
    run or tag, no artifact at that path, a local path in the way, a corrupted blob). ``.cause`` is
    the error behind it, if any. Files already in place are left as they were."""

    def __init__(self, message: str = "", cause: BaseException | None = None):
        super().__init__(message, cause=cause)
