"""Running a cell's body inside the notebook's own kernel, for magics that wrap a cell."""

from __future__ import annotations

import ast

__all__ = ["run_in_shell"]


def run_in_shell(shell, cell: str, fallback_name: str = "<cell>"):
    """Run ``cell`` in the shell's namespace like a cell: IPython syntax allowed, the value of a final
    expression returned, exceptions raised (with the cell's lines in the traceback)."""
    code = shell.transform_cell(cell)
    try:
        filename = shell.compile.cache(code, shell.execution_count, raw_code=cell)
    except (AttributeError, TypeError):
        filename = fallback_name
    tree = ast.parse(code, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), shell.user_ns)
    if last is not None:
        return eval(compile(ast.Expression(last.value), filename, "eval"), shell.user_ns)
    return None
