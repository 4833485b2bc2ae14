"""Which names a cell reads, binds and deletes, found from its AST.

``reads`` over-approximates on purpose: every name loaded anywhere in the cell,
including inside the functions and classes it defines (they run remotely and
look their globals up there). Only names that exist in the local namespace are
sent, so an extra name costs nothing. ``binds`` are the names the cell assigns
at module scope, plus those declared ``global`` in its functions: exactly what
comes back. ``star`` says the cell does ``from m import *`` (the session then
reports every name it bound).

A cell that calls a notebook function also reads that function's globals:
:func:`globals_of` finds them (and the globals it assigns) from its code.
"""

from __future__ import annotations

import ast
import dis
import functools
import re
import types
from dataclasses import dataclass, field

__all__ = ["CellNames", "analyze", "analyze_tree", "globals_of", "shippable"]

# IPython's output-caching names (_, __, _5, _i, _ii3, ...) never travel.
_IPYTHON_CACHE = re.compile(r"^(_+|_i+|_i\d+|_\d+|_o?h|_dh)$")


@dataclass
class CellNames:
    reads: set[str] = field(default_factory=set)
    binds: set[str] = field(default_factory=set)
    deletes: set[str] = field(default_factory=set)
    star: bool = False
    awaits: bool = False  # top-level await: the cell needs an event loop


class _Scanner(ast.NodeVisitor):
    def __init__(self):
        self.names = CellNames()
        self.depth = 0  # >0 inside a function, lambda or class body

    # module-scope bindings -------------------------------------------------
    def _bind(self, name: str):
        if self.depth == 0:
            self.names.binds.add(name)

    def visit_Name(self, node: ast.Name):
        if isinstance(node.ctx, ast.Load):
            self.names.reads.add(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        elif isinstance(node.ctx, ast.Del) and self.depth == 0:
            self.names.deletes.add(node.id)

    def visit_AugAssign(self, node: ast.AugAssign):
        if isinstance(node.target, ast.Name):  # x += 1 reads x too
            self.names.reads.add(node.target.id)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr):
        # A walrus binds in the enclosing function; in a comprehension at module level, the module.
        self._bind(node.target.id)
        self.visit(node.value)

    def _visit_import(self, node):
        for alias in node.names:
            if alias.name == "*":
                self.names.star = True
            else:
                self._bind(alias.asname or alias.name.split(".")[0])

    visit_Import = visit_ImportFrom = _visit_import

    def _visit_scope(self, node, name: str | None):
        if name is not None:
            self._bind(name)
        for decorator in getattr(node, "decorator_list", []):
            self.visit(decorator)
        if isinstance(node, ast.ClassDef):
            for base in node.bases + [k.value for k in node.keywords]:
                self.visit(base)
            body = node.body
        elif isinstance(node, ast.Lambda):
            self._visit_defaults(node.args)
            body = [node.body]
        else:
            self._visit_defaults(node.args)
            if node.returns is not None:
                self.visit(node.returns)
            body = node.body
        self.depth += 1
        for child in body:
            self.visit(child)
        self.depth -= 1

    def _visit_defaults(self, args: ast.arguments):
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.visit(default)

    def visit_FunctionDef(self, node):
        self._visit_scope(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self._visit_scope(node, node.name)

    def visit_Lambda(self, node):
        self._visit_scope(node, None)

    def _visit_await(self, node):
        if self.depth == 0:  # outside any function: the cell needs an event loop
            self.names.awaits = True
        self.generic_visit(node)

    visit_Await = visit_AsyncFor = visit_AsyncWith = _visit_await

    def visit_Global(self, node: ast.Global):
        self.names.binds.update(node.names)  # a function may rebind them when called

    def _visit_comprehension(self, node):
        # Loop variables are local to the comprehension (their targets are not visited);
        # a walrus inside still binds in the enclosing scope.
        for gen in node.generators:
            self.visit(gen.iter)
            for cond in gen.ifs:
                self.visit(cond)
        for part in ("elt", "key", "value"):
            if hasattr(node, part):
                self.visit(getattr(node, part))

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    def visit_ExceptHandler(self, node: ast.ExceptHandler):
        # `except E as e` unbinds e at the end of the handler; nothing to bring back
        if node.type is not None:
            self.visit(node.type)
        for child in node.body:
            self.visit(child)

    def visit_MatchAs(self, node):
        if node.name:
            self._bind(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node):
        if node.name:
            self._bind(node.name)

    def visit_MatchMapping(self, node):
        if node.rest:
            self._bind(node.rest)
        self.generic_visit(node)


def analyze(code: str, filename: str = "<cell>") -> CellNames:
    """Names read, bound and deleted by ``code`` (plain Python; raises SyntaxError)."""
    return analyze_tree(ast.parse(code, filename=filename))


def analyze_tree(tree: ast.AST) -> CellNames:
    scanner = _Scanner()
    scanner.visit(tree)
    return scanner.names


def globals_of(values, namespace: dict) -> tuple[set[str], set[str]]:
    """The namespace names that the functions among ``values`` read and assign as globals
    (``global x; x = ...``), following the notebook functions and classes they use in turn.
    A notebook function called in a cell runs remotely and looks its globals up there."""
    reads: set[str] = set()
    binds: set[str] = set()
    todo = list(values)
    seen: set[int] = set()
    while todo:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        for code in _codes_of(value, namespace):
            loaded, stored = _code_globals(code)
            binds |= stored
            for name in loaded | stored:
                if name in namespace and name not in reads:
                    reads.add(name)
                    todo.append(namespace[name])
    return reads, binds


def _codes_of(value, namespace):
    if isinstance(value, types.FunctionType):
        if value.__globals__ is namespace:
            yield value.__code__
    elif isinstance(value, type) and value.__module__ == "__main__":
        for attr in vars(value).values():
            func = getattr(attr, "__func__", attr)
            if isinstance(func, types.FunctionType) and func.__globals__ is namespace:
                yield func.__code__


@functools.lru_cache(maxsize=4096)
def _code_globals(code: types.CodeType) -> tuple[frozenset, frozenset]:
    loaded, stored = set(), set()
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_GLOBAL" or instruction.opname == "LOAD_NAME":
            loaded.add(instruction.argval)
        elif instruction.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            stored.add(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            inner_loaded, inner_stored = _code_globals(const)
            loaded |= inner_loaded
            stored |= inner_stored
    return frozenset(loaded), frozenset(stored)


def shippable(name: str, hidden: set | frozenset = frozenset()) -> bool:
    """Whether a notebook variable may travel: not IPython's own bookkeeping."""
    return name not in hidden and not _IPYTHON_CACHE.match(name) and name not in ("In", "Out")
