"""Admin helpers for tables with millions of rows (leads, messages, events)."""

import json
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.http import HttpRequest
from django.utils.functional import cached_property

# Below this the exact count is cheap enough; above it the planner's estimate is shown.
EXACT_COUNT_LIMIT = 50_000


class EstimatedCountPaginator(Paginator):
    """Counts with the planner's row estimate when it is large.

    The changelist counts its (filtered) queryset on every page view; ``COUNT(*)`` over tens of
    millions of rows takes seconds. When ``EXPLAIN`` expects more than ``EXACT_COUNT_LIMIT``
    rows, that estimate is used (the page numbers become approximate); smaller results are
    counted exactly.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        query = getattr(queryset, "query", None)
        if query is None:
            return super().count
        compiler = query.get_compiler(queryset.db)
        try:
            sql, params = compiler.as_sql()
        except Exception:  # an empty IN () and similar: let Django count it its own way
            return super().count
        with connections[queryset.db].cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate > EXACT_COUNT_LIMIT:
            return estimate
        return super().count


class BigTableAdmin(admin.ModelAdmin):
    """Changelist settings for big tables: no full count, estimated page count, tenant
    loaded with the rows."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    list_select_related = ("tenant",)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History (the send ledger, events, raw webhooks) is looked at, never edited here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
