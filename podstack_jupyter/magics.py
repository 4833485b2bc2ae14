"""IPython magics: ``%%gpu``, ``%gpu``, ``%%track`` and ``%podstack``.

Thin by design: parse the arguments, then call a plane. Help for each is
generated from its arguments (``%%gpu?``).
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ._shell import run_in_shell
from .errors import InvalidArgumentError

__all__ = ["PodstackMagics", "load_ipython_extension", "unload_ipython_extension"]


def _spec_from_args(args):
    from .compute import GPUSpec, current_spec

    if args.type is None and not (args.pip or args.requirements or args.env) and current_spec() is not None:
        return current_spec()
    try:
        return GPUSpec(type=args.type, count=args.count, fraction=args.fraction, env=args.env,
                       pip=tuple(args.pip), requirements=args.requirements, timeout=args.timeout)
    except InvalidArgumentError as exc:
        raise UsageError(f"%%gpu: {exc}") from None


@magics_class
class PodstackMagics(Magics):
    @magic_arguments()
    @argument("type", nargs="?", default=None,
              help="GPU type: T4, L4, A10, L40S, A100-40G, A100-80G, H100, H200, ... (default: any free GPU, "
                   "else the CPU)")
    @argument("--count", type=int, default=1, help="number of GPUs (default 1)")
    @argument("--fraction", type=int, default=100, help="percent of each GPU, 1-100 (default 100)")
    @argument("--timeout", type=float, default=3600.0, help="seconds before the cell is interrupted (default 3600)")
    @argument("--env", default=None, help="environment preset: ml, nlp, cv, audio, tabular, rl, scientific")
    @argument("--pip", nargs="+", default=[], metavar="PKG", help="packages to install in the session's environment")
    @argument("--requirements", default=None, metavar="FILE", help="a requirements file for the environment")
    @argument("--fresh", action="store_true", help="start a new session (remote state is lost)")
    @argument("--local", action="store_true", help="run in this kernel instead, for debugging")
    @argument("--pull", nargs="+", default=[], metavar="NAME", help="also bring back these names")
    @argument("--push", nargs="+", default=[], metavar="NAME", help="also send these names (even if unchanged)")
    @cell_magic("gpu")
    def gpu_cell(self, line, cell):
        """Run this cell on a GPU session.

        The variables the cell reads travel to a live remote kernel (only those it
        does not already hold unchanged); output streams back live; the variables
        the cell assigns or changes come back into this notebook, all at once. If
        the cell fails, this notebook's variables are left exactly as they were.
        """
        return self._run_gpu(line, cell, line_offset=1)

    def _run_gpu(self, line, cell, line_offset, on_spec=None):
        args = parse_argstring(self.gpu_cell, line)
        spec = _spec_from_args(args)
        if on_spec is not None:
            on_spec(spec)
        if args.local:
            return run_in_shell(self.shell, cell, "<gpu --local>")
        from .compute import run_cell
        from .widgets import gpu_status

        with gpu_status(spec):  # a status line under the cell, where widgets can be drawn
            return run_cell(self.shell, cell, spec, fresh=args.fresh, push=args.push, pull=args.pull,
                            timeout=args.timeout, line_offset=line_offset)

    @line_magic("gpu")
    def gpu_line(self, line):
        """Manage GPU sessions.

        %gpu sessions            list live sessions (spec, backend, GPUs, uptime, state, bytes moved)
        %gpu stop [TYPE|ID|all]  stop sessions (default: all)
        %gpu restart [TYPE|ID]   restart sessions with a fresh kernel (remote state is lost)
        %gpu pull NAME ...       bring variables back from the last used session
        %gpu push NAME ...       send variables to the last used session
        %gpu gpus                the GPUs the backend can place on, and how much of each is in use
        """
        from .compute import sessions

        words = line.split()
        command, rest = (words[0], words[1:]) if words else ("sessions", [])
        if command == "sessions":
            return _SessionTable(sessions.list())
        if command == "stop":
            count = sessions.stop(rest[0] if rest else "all")
            print(f"stopped {count} session(s)")
            return None
        if command == "restart":
            targets = sessions.find(rest[0] if rest else "all")
            for session in targets:
                sessions.get(session.spec, fresh=True)
            print(f"restarted {len(targets)} session(s); their remote state was reset")
            return None
        if command in ("pull", "push"):
            return self._transfer(command, rest)
        if command == "gpus":
            from .compute.backends import get_backend
            from .config import settings

            return get_backend(settings().backend).inventory()
        raise UsageError(f"%gpu: unknown command {command!r}; use one of: sessions, stop, restart, pull, push, gpus")

    def _transfer(self, command, names):
        from .compute import sessions
        from .compute.runner import apply_outcome, encode_for_push

        if not names:
            raise UsageError(f"%gpu {command}: name the variables, e.g. %gpu {command} model")
        live = sorted(sessions.find("all"), key=lambda s: s.last_active)
        if not live:
            raise UsageError(f"%gpu {command}: no GPU session is running; run a %%gpu cell first")
        session = live[-1]
        if command == "push":
            missing = [n for n in names if n not in self.shell.user_ns]
            if missing:
                raise UsageError(f"%gpu push: {missing} not defined in this notebook")
            sent = session.push(encode_for_push(session, {n: self.shell.user_ns[n] for n in names}, set(names)))
            print(f"sent {len(names)} variable(s), {sent:,} bytes of buffers")
        else:
            outcome = session.pull(names)
            apply_outcome(session, outcome, self.shell.user_ns)
            if outcome.absent:
                print(f"not defined in the session: {', '.join(outcome.absent)}")

    @magic_arguments()
    @argument("--name", default=None, help="run name (default: generated)")
    @argument("--experiment", default=None, help="experiment to log into (default: the current one)")
    @argument("--tag", nargs="+", default=[], metavar="KEY=VALUE", help="tags for the run")
    @argument("--params", default=None, metavar="A,B", help="notebook variables to log as params")
    @cell_magic("track")
    def track_cell(self, line, cell):
        """Run this cell as a tracked run.

        Params, metrics, datasets, artifacts and models logged in the cell go to
        the run; the named variables are logged as params; the cell's source,
        duration and status (completed / failed / killed) are recorded. Put
        ``%%gpu TYPE`` on the next line to track a cell that runs on a GPU session.
        """
        args = parse_argstring(self.track_cell, line)
        tags = {}
        for item in args.tag:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"%%track: tag {item!r} must be written KEY=VALUE")
            tags[key] = value
        params = [p.strip() for p in (args.params or "").split(",") if p.strip()]
        missing = [p for p in params if p not in self.shell.user_ns]
        if missing:
            raise UsageError(f"%%track: --params names {missing} are not defined in this notebook")
        from .tracking.cell import run_tracked_cell

        run_cell = None
        first, _, body = cell.partition("\n")
        if first.startswith("%%gpu"):
            from .tracking import registry

            def record_spec(spec):
                registry.set_tag("podstack.gpu", spec.describe())

            run_cell = lambda: self._run_gpu(first[len("%%gpu"):].strip(), body, 2, record_spec)  # noqa: E731
        from .widgets import live_chart

        run_cell = live_chart(self.shell, cell, run_cell)  # the run's live chart under the cell
        return run_tracked_cell(self.shell, cell, name=args.name, experiment=args.experiment, tags=tags,
                                param_names=params, run_cell=run_cell)

    @line_magic("podstack")
    def podstack_line(self, line):
        """Show podstack's version and where it stores things (settings, backend, store)."""
        from .config import describe

        print(describe())


class _SessionTable(list):
    """``%gpu sessions``: a list of dicts that shows as a table."""

    _COLUMNS = ("id", "spec", "backend", "gpus", "uptime_s", "state", "bytes_sent", "bytes_received")

    def _rows(self):
        return [[str(s[c]) for c in self._COLUMNS] for s in self]

    def __repr__(self):
        if not self:
            return "no GPU sessions"
        rows = [list(self._COLUMNS)] + self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._COLUMNS))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows)

    def _repr_html_(self):
        if not self:
            return "<em>no GPU sessions</em>"
        import html

        head = "".join(f"<th>{c}</th>" for c in self._COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in self._rows())
        return f"<table><tr>{head}</tr>{body}</table>"


def load_ipython_extension(ipython):
    ipython.register_magics(PodstackMagics)


def unload_ipython_extension(ipython):
    pass
