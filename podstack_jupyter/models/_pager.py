"""``Pager``: registered models or model versions, a page at a time, in a chosen order."""

from __future__ import annotations

import asyncio
from typing import Callable, Generic, TypeVar

from ..errors import InvalidArgumentError

__all__ = ["Pager"]

T = TypeVar("T")


class Pager(Generic[T]):
    """Iterates over every item, fetching ``page_size`` at a time (default 100), ordered by
    creation time (default), update time or id, ascending (default) or descending::

        for model in registry.get_registered_models().page_size(10).order_by_update_time().descending():
            print(model.name)
        async for version in registry.get_model_versions("fraud-detector"):
            ...

    The settings return the pager, so they chain; each change starts it over. Each ``for`` (or
    ``async for``) walks from the first item. ``next_page()`` / ``next_item()`` step by hand
    (``StopIteration`` / ``StopAsyncIteration`` at the end); ``restart()`` goes back to the start.
    Pages continue after the last item seen (by its order value and id), so items added while
    iterating are neither repeated nor shifted; an item updated meanwhile may move in an
    update-time order.
    """

    def __init__(self, fetch: Callable[..., tuple[list, list | None]], convert: Callable[[object], T] = lambda x: x):
        # fetch(page_size=, order_by=, ascending=, after=) -> (items, after of the next page or None)
        self._fetch, self._convert = fetch, convert
        self._page_size, self._order_by, self._ascending = 100, "created_at", True
        self.restart()

    def __repr__(self):
        direction = "ascending" if self._ascending else "descending"
        return f"<Pager page_size={self._page_size} order_by={self._order_by} {direction}>"

    # -- settings ------------------------------------------------------------------------------
    def page_size(self, size: int) -> "Pager[T]":
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 10_000:
            raise InvalidArgumentError(f"page_size must be an integer from 1 to 10,000, got {size!r}")
        self._page_size = size
        return self.restart()

    def order_by_creation_time(self) -> "Pager[T]":
        self._order_by = "created_at"
        return self.restart()

    def order_by_update_time(self) -> "Pager[T]":
        self._order_by = "updated_at"
        return self.restart()

    def order_by_id(self) -> "Pager[T]":
        self._order_by = "id"
        return self.restart()

    def ascending(self) -> "Pager[T]":
        self._ascending = True
        return self.restart()

    def descending(self) -> "Pager[T]":
        self._ascending = False
        return self.restart()

    def restart(self) -> "Pager[T]":
        """Start again from the first item."""
        self._after, self._done, self._buffer = None, False, []
        return self

    # -- stepping ------------------------------------------------------------------------------
    def _get_page(self, after):
        return self._fetch(page_size=self._page_size, order_by=self._order_by, ascending=self._ascending,
                           after=after)

    def next_page(self) -> list[T]:
        """The next page of items (``StopIteration`` when there are no more)."""
        if self._done:
            raise StopIteration
        items, self._after = self._get_page(self._after)
        self._done = self._after is None
        if not items:
            raise StopIteration
        return [self._convert(item) for item in items]

    def next_item(self) -> T:
        """The next item (``StopIteration`` when there are no more)."""
        if not self._buffer:
            self._buffer = self.next_page()
        return self._buffer.pop(0)

    def __iter__(self):
        after = None
        while True:
            items, after = self._get_page(after)
            for item in items:
                yield self._convert(item)
            if after is None:
                return

    async def __aiter__(self):
        after = None
        while True:
            # the store's calls block: run them off the event loop
            items, after = await asyncio.to_thread(self._get_page, after)
            for item in items:
                yield self._convert(item)
            if after is None:
                return
