"""``podstack artifacts ...``: Julia-compatible ``Artifacts.toml`` from the terminal."""

from __future__ import annotations

import json
import sys

__all__ = ["add_parser"]


def _platform(values):
    if not values:
        return None
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"podstack artifacts: --platform takes KEY=VALUE (e.g. os=linux), got {item!r}")
        tags[key] = value
    return tags


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def _hash(args):
    from pathlib import Path

    from .julia import compute_git_tree_sha1, compute_sha256

    for path in args.paths:
        if Path(path).is_dir():
            print(f"git-tree-sha1 {compute_git_tree_sha1(path)}  {path}")
        else:
            print(f"sha256 {compute_sha256(path)}  {path}")


def _create(args):
    from .julia import create_artifact

    _print_json(create_artifact(args.directory, args.archive, None if args.compression == "none" else args.compression))


def _bind(args):
    from .julia import bind_artifact

    if len(args.url) != len(args.sha256):
        raise SystemExit("podstack artifacts bind: give one --sha256 per --url")
    path = bind_artifact(args.toml, args.name, args.git_tree_sha1, lazy=args.lazy, force=args.force,
                         platform=_platform(args.platform), download_info=list(zip(args.url, args.sha256)))
    print(f"bound {args.name} in {path}")


def _unbind(args):
    from .julia import unbind_artifact

    if not unbind_artifact(args.toml, args.name, platform=_platform(args.platform)):
        print(f"{args.toml} does not bind {args.name}", file=sys.stderr)
        return 1


def _add(args):
    from .julia import add_artifact

    _print_json(add_artifact(args.toml, args.name, args.url, lazy=args.lazy, force=args.force,
                             clear=not args.keep, platform=_platform(args.platform)))


def _get(args):
    from .julia import artifact

    print(artifact(args.name, args.toml, platform=_platform(args.platform)))


def _list(args):
    from .julia import load_artifacts

    manager = load_artifacts(args.toml)
    for name, entry in sorted(manager.artifacts.items()):
        state = "installed" if manager.exists(name) else ("lazy" if entry.lazy else "not installed")
        print(f"{name:30} {entry.git_tree_sha1}  {state}")


def _instantiate(args):
    from .julia import load_artifacts

    for name, path in load_artifacts(args.toml).ensure_installed(include_lazy=args.include_lazy).items():
        print(f"{name:30} {path}")


def _exists(args):
    from .julia import artifact_exists

    return 0 if artifact_exists(args.name, args.toml) else 1


def _clear(args):
    from .julia import clear_artifact_cache

    for removed in clear_artifact_cache(args.name, args.toml):
        print(f"removed {removed}")


def _publisher(args):
    from .julia import FolderPublisher

    return FolderPublisher(args.publish_dir, base_url=args.base_url)


def _publish(args):
    from .julia import publish_model_version, publish_run_artifacts

    options = dict(toml_path=args.toml, publisher=_publisher(args), compression=args.compression,
                   lazy=args.lazy, force=args.force)
    if args.run:
        result = publish_run_artifacts(args.run, args.name, artifact_path=args.path, **options)
    else:
        model, _, version = args.model.partition(":")
        result = publish_model_version(model, int(version) if version else None, name=args.name, **options)
    _print_json(result)


def _serve(args):
    from .julia._publish import default_publish_dir, serve

    folder = args.publish_dir or default_publish_dir()
    print(f"serving {folder} at http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        serve(folder, args.host, args.port)
    except KeyboardInterrupt:
        return 0


def _with_cache(func):
    def run(args):
        if args.cache_dir:
            from .julia import set_cache_dir

            set_cache_dir(args.cache_dir)
        return func(args)

    return run


def add_parser(subparsers) -> None:
    """``podstack artifacts``: hash, create, bind, add, get, list, clear, publish and serve artifacts."""
    parser = subparsers.add_parser(
        "artifacts", help="Julia-compatible Artifacts.toml: hash, create, bind, install, publish",
        description="Artifacts named by their git-tree-sha1 in an Artifacts.toml, as Julia's Pkg.Artifacts "
                    "reads them. Installed artifacts live in the cache folder (podstack home/julia_artifacts).")
    parser.add_argument("--cache-dir", help="cache folder for installed artifacts (default: <home>/julia_artifacts)")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name, func, help_):
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(func=_with_cache(func))
        return sub

    def toml_option(sub):
        sub.add_argument("--toml", default=None, help="the Artifacts.toml (default: found from this folder upwards)")

    def platform_option(sub):
        sub.add_argument("--platform", nargs="*", metavar="KEY=VALUE",
                         help="platform tags, e.g. os=linux arch=x86_64 libc=glibc")

    sub = command("hash", _hash, "print the git-tree-sha1 of folders and the sha256 of files")
    sub.add_argument("paths", nargs="+")

    sub = command("create", _create, "archive a folder reproducibly; prints its git-tree-sha1 and sha256")
    sub.add_argument("directory")
    sub.add_argument("archive")
    sub.add_argument("--compression", default="xz", choices=["xz", "gz", "bz2", "zstd", "none"])

    sub = command("bind", _bind, "write an artifact into an Artifacts.toml")
    sub.add_argument("name")
    sub.add_argument("git_tree_sha1")
    sub.add_argument("--url", action="append", default=[], help="download url (repeat for mirrors)")
    sub.add_argument("--sha256", action="append", default=[], help="sha256 of the archive at each --url")
    sub.add_argument("--lazy", action="store_true", help="install only on first use")
    sub.add_argument("--force", action="store_true", help="replace an existing binding")
    sub.add_argument("--toml", default="Artifacts.toml")
    platform_option(sub)

    sub = command("unbind", _unbind, "remove an artifact from an Artifacts.toml")
    sub.add_argument("name")
    sub.add_argument("--toml", default="Artifacts.toml")
    platform_option(sub)

    sub = command("add", _add, "download a tarball, hash it and bind it")
    sub.add_argument("name")
    sub.add_argument("url")
    sub.add_argument("--toml", default="Artifacts.toml")
    sub.add_argument("--lazy", action="store_true")
    sub.add_argument("--force", action="store_true")
    sub.add_argument("--keep", action="store_true", help="keep the unpacked tree installed in the cache")
    platform_option(sub)

    sub = command("get", _get, "install an artifact if needed and print its folder")
    sub.add_argument("name", help="NAME or NAME/path/inside")
    toml_option(sub)
    platform_option(sub)

    sub = command("list", _list, "list the artifacts of an Artifacts.toml and whether they are installed")
    toml_option(sub)

    sub = command("instantiate", _instantiate, "install every non-lazy artifact (as Pkg.instantiate)")
    toml_option(sub)
    sub.add_argument("--include-lazy", action="store_true")

    sub = command("exists", _exists, "exit 0 if the artifact is installed, 1 if not")
    sub.add_argument("name", help="a name, or a git-tree-sha1")
    toml_option(sub)

    sub = command("clear", _clear, "remove installed artifacts (one, or all in the cache)")
    sub.add_argument("name", nargs="?")
    toml_option(sub)

    sub = command("publish", _publish, "publish a run's or a model version's artifacts as an Artifacts.toml entry")
    sub.add_argument("name", help="artifact name to bind")
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="run id")
    which.add_argument("--model", help="registered model, MODEL or MODEL:VERSION (latest by default)")
    sub.add_argument("--path", help="only the run's artifacts under this path")
    sub.add_argument("--toml", default="Artifacts.toml")
    sub.add_argument("--publish-dir", help="where archives go (default: <home>/published_artifacts)")
    sub.add_argument("--base-url", help="url the publish folder is served at (default: file:// urls)")
    sub.add_argument("--compression", default="gz", choices=["xz", "gz", "bz2", "zstd", "none"])
    sub.add_argument("--lazy", action="store_true")
    sub.add_argument("--force", action="store_true")

    sub = command("serve", _serve, "serve the publish folder over HTTP (read-only)")
    sub.add_argument("--publish-dir", help="folder to serve (default: <home>/published_artifacts)")
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8000)

