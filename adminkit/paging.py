"""Pagination that stays fast on tables of ten million rows: a capped count and pages fetched by key.

Why: Django's paginator counts every matching row (``COUNT(*)`` over ten million change-log rows
costs about half a second on PostgreSQL) and fetches a page with ``OFFSET``, so a deep page makes
the database build every skipped row, with its joins and correlated subqueries, only to throw
them away. Here the count stops at ``COUNT_CAP`` (the page says "more than 100,000" and the
filters narrow it), and a page is fetched in two steps: the primary keys of the page from the
bare ordered query (no joins a key does not need, no annotations the order does not use), then
the rows of those keys with everything the list displays.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

COUNT_CAP = 100_000
# a searched list stops counting sooner: the matches of a substring search are found row by row (a trigram
# index narrows the candidates, each one is rechecked), so counting 22,000 matches of "app_user_12" among
# 1,000,000 accounts was most of a 500 ms page; "more than 1,000" tells the reader to refine just as well
SEARCH_COUNT_CAP = 1_000


def capped_count(queryset: QuerySet, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """``(count, capped)``: the rows of `queryset` up to `cap`, and whether there are more."""
    counted = queryset.order_by().values("pk")[: cap + 1].count()
    return min(counted, cap), counted > cap


def page_by_keys(queryset: QuerySet, start: int, stop: int) -> list[Any]:
    """The rows ``start:stop`` of the ordered `queryset`, found by key first, in the queryset's order.

    ``values_list("pk")`` drops ``select_related`` and every annotation the ordering does not
    name, so the ``OFFSET`` walks the ordering's index alone; the second query joins and
    annotates only the page's rows. The first page needs no keys: its LIMIT stops the scan.
    """
    if start == 0:  # a LIMIT alone already stops at the page: one query, as Django makes it
        return list(queryset[start:stop])
    keys = list(queryset.values_list("pk", flat=True)[start:stop])
    if not keys:
        return []
    rows = {row.pk: row for row in queryset.filter(pk__in=keys).order_by()}
    return [rows[key] for key in keys if key in rows]


class CappedPage(Page):
    """A page whose rows were fetched by key (see ``page_by_keys``)."""


class CappedPaginator(Paginator):
    """Django's paginator with a capped count and key-first pages, for the admin change lists.

    ``capped`` says the count stopped at the cap; the list template then says "more than".
    A queryset that is not a QuerySet (a list) is paginated as Django does.
    """

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        counted, self.capped = capped_count(self.object_list, self.cap)
        return counted

    capped = False

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count and not self.capped:
            top = self.count
        if not isinstance(self.object_list, QuerySet):
            return self._get_page(self.object_list[bottom:top], number, self)
        return CappedPage(page_by_keys(self.object_list, bottom, top), number, self)
