"""IPython magics: ``%%gpu``, ``%gpu``, ``%%track`` and ``%podstack``.

Thin by design: parse the arguments (argparse, apart from the dispatch), then
call a plane. The help of each is generated from its parser (``%%gpu?``,
``%gpu?``, ``%gpu stop --help``).
"""

from __future__ import annotations

import argparse
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.utils.process import arg_split

from ._shell import run_in_shell
from .errors import InvalidArgumentError

__all__ = ["PodstackMagics", "SessionTable", "GPUTable", "load_ipython_extension", "unload_ipython_extension"]


class _HelpShown(Exception):
    """``--help`` was printed: the magic has nothing more to do."""


class _MagicParser(argparse.ArgumentParser):
    """argparse for a magic: a bad argument is a UsageError (shown without a traceback), and
    ``--help`` prints to the cell instead of exiting the kernel."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}\n\n{self.format_usage().strip()}  (--help for more)")

    def exit(self, status=0, message=None):
        if message:
            print(message, file=sys.stderr if status else sys.stdout)
        raise _HelpShown()

    def print_help(self, file=None):
        print(self.format_help())

    def parse(self, line: str) -> argparse.Namespace:
        return self.parse_args(arg_split(line))


def _gpu_cell_parser() -> _MagicParser:
    parser = _MagicParser(
        prog="%%gpu", description=(
            "Run this cell on a GPU session.\n\n"
            "The variables the cell reads travel to a live remote kernel (only those it does not already hold\n"
            "unchanged); output streams back live; the variables the cell assigns or changes come back into\n"
            "this notebook, all at once. If the cell fails, this notebook's variables are left as they were.\n"
            "Without a GPU on this machine, plain %%gpu runs on the CPU; declare GPUs for placement with\n"
            "PODSTACK_LOCAL_GPUS=L40S:2,T4 (see %gpu gpus)."))
    parser.add_argument("type", nargs="?", default=None,
                        help="GPU type: T4, L4, A10, L40S, A100-40G, A100-80G, H100, H200, ... (default: any free "
                             "GPU, else the CPU)")
    parser.add_argument("--count", type=int, default=1, help="number of GPUs (default 1)")
    parser.add_argument("--fraction", type=int, default=100, help="percent of each GPU, 1-100 (default 100)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before the cell is interrupted (default 3600)")
    parser.add_argument("--env", default=None, help="environment preset: ml, nlp, cv, audio, tabular, rl, scientific")
    parser.add_argument("--pip", nargs="+", default=[], metavar="PKG",
                        help="packages to install in the session's environment (built once, cached)")
    parser.add_argument("--requirements", default=None, metavar="FILE", help="a requirements file for the environment")
    parser.add_argument("--fresh", action="store_true", help="start a new session (remote state is lost)")
    parser.add_argument("--local", action="store_true", help="run in this kernel instead, for debugging")
    parser.add_argument("--pull", nargs="+", default=[], metavar="NAME", help="also bring back these names")
    parser.add_argument("--push", nargs="+", default=[], metavar="NAME",
                        help="also send these names (even if unchanged)")
    return parser


def _gpu_line_parser() -> _MagicParser:
    parser = _MagicParser(prog="%gpu", description="Manage GPU sessions (the ones %%gpu cells and @podstack.gpu "
                                                   "functions run in).",
                          epilog="%gpu alone lists the sessions. %gpu COMMAND --help shows a command's help.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_MagicParser)
    commands.add_parser("sessions", help="list the sessions: state, spec, backend, GPUs, uptime, bytes moved",
                        description="List the sessions: state, spec, backend, GPUs, environment, uptime, bytes moved.")
    for name, what in (("stop", "stop sessions"), ("restart", "restart sessions with a fresh kernel "
                                                             "(their remote state is lost)")):
        command = commands.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        command.add_argument("target", nargs="?", default="all",
                             help="a session id, a GPU type (L40S, cpu) or 'all' (default: all)")
    for name, what in (("pull", "bring variables back from the most recently used session"),
                       ("push", "send variables to the most recently used session")):
        command = commands.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        command.add_argument("names", nargs="+", metavar="NAME", help="variable names")
    commands.add_parser("gpus", help="the GPUs the backend can place on, and how much of each is in use",
                        description="The GPUs the backend can place sessions on, and how much of each is in use.")
    return parser


def _full_help(parser: _MagicParser) -> str:
    """The parser's help and every sub-command's, for ``%gpu?``."""
    parts = [parser.format_help()]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            parts += [sub.format_help() for sub in action.choices.values()]
    return "\n".join(parts)


_GPU_CELL = _gpu_cell_parser()
_GPU_LINE = _gpu_line_parser()


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
    @cell_magic("gpu")
    def gpu_cell(self, line, cell):
        try:
            return self._run_gpu(line, cell, line_offset=1)
        except _HelpShown:
            return None

    gpu_cell.__doc__ = _GPU_CELL.format_help()

    def _run_gpu(self, line, cell, line_offset, on_spec=None):
        args = _GPU_CELL.parse(line)
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
        try:
            args = _GPU_LINE.parse(line)
        except _HelpShown:
            return None
        command = args.command or "sessions"
        from .compute import sessions

        if command == "sessions":
            return SessionTable(sessions.list())
        if command == "gpus":
            from .compute.backends import get_backend
            from .config import settings

            backend = settings().backend
            return GPUTable(get_backend(backend).inventory(), backend=backend)
        if command in ("pull", "push"):
            return self._transfer(command, args.names)
        targets = sessions.find(args.target)
        if not targets:
            if args.target == "all":
                print(f"no GPU sessions to {command}")
                return None
            live = sessions.list()
            there = ("live sessions:\n" + SessionTable(live).text()) if live else "no GPU session is running"
            raise UsageError(f"%gpu {command}: no session matches {args.target!r} (a session id, a GPU type such as "
                             f"L40S or cpu, or 'all'); {there}")
        if command == "stop":
            for session in targets:
                sessions.stop(session.id)
            print(f"stopped {len(targets)} session(s): {', '.join(s.id for s in targets)}")
        else:
            for session in targets:
                sessions.get(session.spec, fresh=True)
            print(f"restarted {len(targets)} session(s); their remote state was reset")
        return None

    gpu_line.__doc__ = _full_help(_GPU_LINE)

    def _transfer(self, command, names):
        from .compute import sessions
        from .compute.runner import pull_names, push_names

        live = sorted(sessions.find("all"), key=lambda s: s.last_active)
        if not live:
            raise UsageError(f"%gpu {command}: no GPU session is running; run a %%gpu cell first")
        session = live[-1]
        if command == "push":
            missing = [n for n in names if n not in self.shell.user_ns]
            if missing:
                raise UsageError(f"%gpu push: {missing} not defined in this notebook")
            sent = push_names(session, self.shell.user_ns, names)
            print(f"sent {len(names)} variable(s), {sent:,} bytes")
        else:
            landed = pull_names(session, self.shell.user_ns, names)
            if landed.removed:
                print(f"not defined in the session: {', '.join(landed.removed)}")

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


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


class _Table(list):
    """A list of dicts (scriptable: ``s = %gpu sessions``) that shows as a text table in a terminal
    and a rendered (markdown) table in a notebook."""

    columns: tuple[tuple[str, str], ...] = ()  # (key, heading)
    empty = ""

    def _cells(self, row: dict) -> list[str]:
        return [str(row.get(key, "")) for key, _ in self.columns]

    def _footer(self) -> str:
        return ""

    def text(self) -> str:
        if not self:
            return self.empty
        rows = [[heading for _, heading in self.columns]] + [self._cells(r) for r in self]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines + ([self._footer()] if self._footer() else []))

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.text())

    def __repr__(self):
        return self.text()

    def _repr_markdown_(self):
        # rendered as a table by JupyterLab, and still readable where a notebook is exported as markdown
        if not self:
            return f"*{self.empty}*"

        def row(cells):
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [row([h for _, h in self.columns]), row(["---"] * len(self.columns))]
        lines += [row(self._cells(r)) for r in self]
        return "\n".join(lines + ([f"\n{self._footer()}"] if self._footer() else []))


class SessionTable(_Table):
    """``%gpu sessions``: one row per session (``GPUSession.info()``)."""

    columns = (("id", "id"), ("state", "state"), ("spec", "spec"), ("backend", "backend"), ("gpus", "GPUs"),
               ("environment", "environment"), ("uptime_s", "uptime"), ("bytes_sent", "sent"),
               ("bytes_received", "received"))
    empty = "no GPU sessions"

    def _cells(self, row):
        cells = dict(row, uptime_s=_duration(row["uptime_s"]), bytes_sent=_size(row["bytes_sent"]),
                     bytes_received=_size(row["bytes_received"]), environment=row.get("environment") or "-")
        return [str(cells.get(key, "")) for key, _ in self.columns]


class GPUTable(_Table):
    """``%gpu gpus``: the devices the backend can place sessions on, and how much of each is in use."""

    columns = (("index", "index"), ("type", "type"), ("name", "device"), ("used_percent", "in use"))
    empty = ("no GPUs: %%gpu sessions run on the CPU. On a machine without NVML, declare the GPUs for "
             "placement with PODSTACK_LOCAL_GPUS, e.g. PODSTACK_LOCAL_GPUS=L40S:2,T4")

    def __init__(self, rows=(), backend: str = "local"):
        super().__init__(rows)
        self.backend = backend
        if any("node" in r for r in self):
            self.columns = (("node", "node"), *type(self).columns)

    def _cells(self, row):
        values = [row.get(key) for key, _ in self.columns]
        return ["-" if v in (None, "") else f"{v}%" if key == "used_percent" else str(v)
                for v, (key, _) in zip(values, self.columns)]

    def _footer(self):
        return f"backend: {self.backend}"


_MAGIC_NAMES = {"line": ("gpu", "podstack"), "cell": ("gpu", "track")}


def load_ipython_extension(ipython):
    ipython.register_magics(PodstackMagics)
    from . import jupyter_ext

    jupyter_ext.attach(ipython)  # the JupyterLab sidebar and status bar follow this kernel (no-op outside one)


def unload_ipython_extension(ipython):
    """Remove the magics ``load_ipython_extension`` added (running sessions stay until stopped)."""
    manager = ipython.magics_manager
    for kind, names in _MAGIC_NAMES.items():
        for name in names:
            bound = manager.magics[kind].get(name)
            if isinstance(getattr(bound, "__self__", None), PodstackMagics):
                del manager.magics[kind][name]
    manager.registry.pop(PodstackMagics.__name__, None)
    from . import jupyter_ext

    jupyter_ext.detach(ipython)
