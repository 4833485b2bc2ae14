"""``search_runs`` filters: the filter string and the dict forms, turned into store clauses.

Filter string: clauses joined by ``and``::

    metrics.accuracy > 0.9 and params.optimizer = 'adam' and tags.variant != 'baseline'
    status = 'completed' and name LIKE 'bert-%' and params.lr < 0.01
    metrics.loss IN (0.1, 0.2) and datasets.name = 'imdb-train' and start_time >= '2025-01-01'

* ``metrics.<key>``: the run's latest value of that metric; ``= != < <= > >= IN NOT IN`` with numbers.
* ``params.<key>``: numbers compare numerically (``params.lr < 0.01``), quoted text as text; also
  ``LIKE``/``ILIKE``.
* ``tags.<key>``: text; ``= != LIKE ILIKE IN NOT IN`` (and ``< >`` on text).
* run attributes (bare or as ``attributes.<name>``): ``id``, ``name``, ``status``, ``experiment_id``,
  ``parent_run_id``, ``start_time``, ``end_time`` (times as epoch seconds or ISO 8601 text).
* ``datasets.<field>``: runs that logged a dataset with that ``name``, ``digest``, ``source``,
  ``source_type``, ``id`` or ``context``.

Keys with spaces or odd characters go in backquotes: ``metrics.`val acc` > 0.5``. Dots after the
prefix belong to the key (``metrics.val.loss``). Keywords are case-insensitive.
"""

from __future__ import annotations

import datetime as _dt
import re

from ..errors import InvalidArgumentError
from . import _validate as V
from .store import RUN_STATUSES

__all__ = ["parse_filter", "dict_clauses", "parse_order_by"]

_PREFIXES = {"metrics": "metric", "metric": "metric", "params": "param", "param": "param",
             "tags": "tag", "tag": "tag", "attributes": "attribute", "attribute": "attribute",
             "attr": "attribute", "run": "attribute", "datasets": "dataset", "dataset": "dataset"}
_ATTRIBUTES = ("id", "run_id", "name", "run_name", "status", "experiment_id", "parent_run_id",
               "start_time", "end_time")
_DATASET_FIELDS = ("name", "digest", "source", "source_type", "id", "context")
_NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN")
_TEXT_OPS = ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN")
_OP_ALIASES = {"==": "=", "<>": "!="}

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
    | (?P<ident>[A-Za-z_]\w*(?:\.(?:`[^`]+`|[\w\-/:.]+))?)
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<punct>[(),])
    )""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidArgumentError(f"search filter: cannot read {text[pos:pos + 20]!r} "
                                       f"(at character {pos}) in {text!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


def _literal(kind: str, token: str):
    if kind == "string":
        quote = token[0]
        return token[1:-1].replace(quote * 2, quote)
    if kind == "number":
        number = float(token)
        return int(number) if number.is_integer() and re.fullmatch(r"[-+]?\d+", token) else number
    raise InvalidArgumentError(f"search filter: expected a number or a quoted string, got {token!r}")


def _epoch(value, what):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return V.number(f"search: {what}", value)
    if isinstance(value, _dt.datetime):
        moment = value
    else:
        try:
            moment = _dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise InvalidArgumentError(f"search: {what} takes epoch seconds or ISO 8601 text, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def _subject(ident: str) -> tuple[str, str]:
    head, dot, rest = ident.partition(".")
    if not dot:
        if ident.lower() in _ATTRIBUTES:
            return "attribute", ident.lower()
        raise InvalidArgumentError(
            f"search filter: {ident!r} is not a run attribute; write metrics.<key>, params.<key>, tags.<key>, "
            f"datasets.<field> or one of {list(_ATTRIBUTES)}")
    kind = _PREFIXES.get(head.lower())
    if kind is None:
        raise InvalidArgumentError(f"search filter: unknown prefix {head!r} in {ident!r}; "
                                   "use metrics., params., tags., attributes. or datasets.")
    key = rest[1:-1] if rest.startswith("`") else rest
    return kind, V.key(f"search: the {kind} name in {head}.", key)


def make_clause(kind: str, key: str, op: str, value) -> dict:
    """One validated clause ``{"kind", "key", "op", "value"}``."""
    if not isinstance(op, str):
        raise InvalidArgumentError(f"search: the operator for {kind} {key!r} must be text like '>', got {op!r}")
    key = V.key(f"search: {kind} name", key)
    op = _OP_ALIASES.get(op.upper(), op.upper())
    many = op in ("IN", "NOT IN")
    values = list(value) if many else [value]
    if many and (not isinstance(value, (list, tuple, set)) or not values):
        raise InvalidArgumentError(f"search: {op} needs a non-empty list of values for {kind} {key!r}")
    if kind == "metric":
        if op not in _NUMERIC_OPS:
            raise InvalidArgumentError(f"search: metrics.{key} takes {list(_NUMERIC_OPS)}, not {op}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise InvalidArgumentError(f"search: metrics.{key} compares with numbers, got {value!r}")
        values = [V.number(f"search: the value for metrics.{key}", v) for v in values]
    elif kind in ("param", "tag"):
        if op not in _TEXT_OPS:
            raise InvalidArgumentError(f"search: {kind}s.{key} takes {list(_TEXT_OPS)}, not {op}")
        if kind == "tag" or op in ("LIKE", "ILIKE") or any(isinstance(v, bool) for v in values):
            values = [V.value_text(f"search: the value for {kind}s.{key}", v) for v in values]
        else:
            values = [V.number(f"search: the value for {kind}s.{key}", v)
                      if isinstance(v, (int, float)) else V.value_text(f"search: the value for {kind}s.{key}", v)
                      for v in values]
    elif kind == "attribute":
        if key not in _ATTRIBUTES:
            raise InvalidArgumentError(f"search: unknown run attribute {key!r}; use one of {list(_ATTRIBUTES)}")
        if op not in _TEXT_OPS:
            raise InvalidArgumentError(f"search: {key} takes {list(_TEXT_OPS)}, not {op}")
        if key in ("start_time", "end_time"):
            values = [_epoch(v, key) for v in values]
        else:
            values = [V.value_text(f"search: the value for {key}", v) for v in values]
            bad = [v for v in values if v not in RUN_STATUSES] if key == "status" and op in ("=", "!=", "IN", "NOT IN") \
                else []
            if bad:
                raise InvalidArgumentError(f"search: status {bad[0]!r} is not one of {list(RUN_STATUSES)}")
    elif kind == "dataset":
        if key not in _DATASET_FIELDS:
            raise InvalidArgumentError(f"search: datasets.{key} is not a dataset field; "
                                       f"use one of {list(_DATASET_FIELDS)}")
        if op not in _TEXT_OPS:
            raise InvalidArgumentError(f"search: datasets.{key} takes {list(_TEXT_OPS)}, not {op}")
        values = [V.value_text(f"search: the value for datasets.{key}", v) for v in values]
    else:
        raise InvalidArgumentError(f"search: unknown clause kind {kind!r}")
    return {"kind": kind, "key": key, "op": op, "value": values if many else values[0]}


def parse_filter(text: str) -> list[dict]:
    """The clauses of a filter string (see the module docstring)."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"search filter must be a string, got {type(text).__name__}")
    tokens = _tokens(text)
    clauses, i = [], 0

    def peek(offset=0):
        return tokens[i + offset] if i + offset < len(tokens) else (None, None)

    while i < len(tokens):
        kind, token = peek()
        if kind != "ident":
            raise InvalidArgumentError(f"search filter: expected a name like metrics.accuracy, got {token!r} "
                                       f"in {text!r}")
        subject = _subject(token)
        i += 1
        kind, token = peek()
        word = (token or "").upper()
        if kind == "op":
            op = token
            i += 1
            value = _literal(*peek())
            i += 1
        elif kind == "ident" and word in ("LIKE", "ILIKE", "IN", "NOT"):
            i += 1
            if word == "NOT":
                if (peek()[1] or "").upper() != "IN":
                    raise InvalidArgumentError(f"search filter: NOT must be followed by IN in {text!r}")
                i += 1
                word = "NOT IN"
            op = word
            if op in ("IN", "NOT IN"):
                if peek()[1] != "(":
                    raise InvalidArgumentError(f"search filter: {op} takes a list in parentheses: IN (1, 2)")
                i += 1
                value = []
                while True:
                    value.append(_literal(*peek()))
                    i += 1
                    sep = peek()[1]
                    i += 1
                    if sep == ")":
                        break
                    if sep != ",":
                        raise InvalidArgumentError(f"search filter: expected ',' or ')' in the {op} list of {text!r}")
            else:
                value = _literal(*peek())
                i += 1
        else:
            raise InvalidArgumentError(f"search filter: expected an operator after {subject[0]}s.{subject[1]}, "
                                       f"got {token!r}; use = != < <= > >= LIKE ILIKE IN")
        clauses.append(make_clause(subject[0], subject[1], op, value))
        kind, token = peek()
        if token is None:
            break
        if (token or "").upper() == "OR":
            raise InvalidArgumentError("search filter: only AND is supported; run two searches for OR")
        if (token or "").upper() != "AND":
            raise InvalidArgumentError(f"search filter: expected AND between clauses, got {token!r} in {text!r}")
        i += 1
        if i >= len(tokens):
            raise InvalidArgumentError(f"search filter: {text!r} ends with AND")
    return clauses


_CONDITION = re.compile(r"^\s*(<=|>=|!=|<>|==|=|<|>)\s*(.+?)\s*$")


def dict_clauses(kind: str, conditions) -> list[dict]:
    """Clauses from ``metrics={"accuracy": (">", 0.9)}``, ``params={"lr": 0.001}``, ``tags={"k": "v"}``.

    A value is an equality; ``(op, value)`` or ``"> 0.9"`` (metrics) compares; a list of those
    combines them (``{"loss": [(">", 0.1), ("<", 0.5)]}``).
    """
    if conditions is None:
        return []
    if not isinstance(conditions, dict):
        raise InvalidArgumentError(f"search_runs: {kind}s= takes a dict, got {type(conditions).__name__}")
    clauses = []
    for key, condition in conditions.items():
        items = condition if isinstance(condition, list) and condition and isinstance(condition[0], tuple) \
            else [condition]
        for item in items:
            if isinstance(item, tuple):
                if len(item) != 2 or not isinstance(item[0], str):
                    raise InvalidArgumentError(f"search_runs: {kind}s[{key!r}] = {item!r}; write (op, value), "
                                               "e.g. ('>', 0.9)")
                op, value = item
            elif kind == "metric" and isinstance(item, str):
                match = _CONDITION.match(item)
                if match is None:
                    raise InvalidArgumentError(f"search_runs: metrics[{key!r}] = {item!r}; write '> 0.9' or (op, value)")
                op = match.group(1)
                try:
                    value = float(match.group(2))
                except ValueError:
                    raise InvalidArgumentError(f"search_runs: metrics[{key!r}]: {match.group(2)!r} is not a number") \
                        from None
            else:
                op, value = "=", item
            if not isinstance(key, str):
                raise InvalidArgumentError(f"search_runs: {kind}s= names are text, got {key!r}")
            clauses.append(make_clause(kind, key, op, value))
    return clauses


def parse_order_by(order_by) -> list[dict]:
    """``"metrics.accuracy DESC"``, ``"start_time"``, or a list of those."""
    if order_by is None:
        return []
    items = [order_by] if isinstance(order_by, str) else list(order_by)
    result = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgumentError(f"search_runs: order_by entries are strings like 'metrics.loss ASC', got {item!r}")
        text = item.strip()
        ascending = True
        match = re.fullmatch(r"(.+?)\s+(ASC|DESC)", text, re.IGNORECASE)
        if match:
            text, ascending = match.group(1), match.group(2).upper() == "ASC"
        kind, key = _subject(text)
        if kind == "dataset":
            raise InvalidArgumentError("search_runs: cannot order by a dataset field")
        if kind == "attribute" and key not in _ATTRIBUTES:
            raise InvalidArgumentError(f"search_runs: cannot order by {key!r}; use one of {list(_ATTRIBUTES)}")
        result.append({"kind": kind, "key": key, "ascending": ascending})
    return result
