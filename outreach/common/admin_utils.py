"""Admin helpers for tables with millions of rows (leads, messages, events)."""

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.functional import cached_property

from outreach.common.errors import ApplicationError

# Below this the exact count is cheap enough; above it the planner's estimate is shown.
EXACT_COUNT_LIMIT = 50_000
# A reason action changes (and audits) its rows one by one, and its confirmation page lists
# them: "select all" on a table of millions is refused beyond this many rows.
REASON_ACTION_MAX_ROWS = 1000


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


def admin_actor(request: HttpRequest) -> str:
    """Who did it, for the audit log."""
    return f"admin:{request.user.get_username()}"


def permission_check(permission: str) -> Callable[..., bool]:
    """A ``has_<name>_permission`` method for a ModelAdmin, so that an action declaring
    ``allowed_permissions = ("<name>",)`` is offered (and run) only for users holding
    ``permission`` (``"app_label.codename"``)."""

    def check(self: admin.ModelAdmin, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(permission)

    return check


def reason_action(
    *,
    name: str,
    description: str,
    explanation: str,
    apply: Callable[[HttpRequest, Any, str], object],
    permission: str,
) -> Callable:
    """An admin action that asks why first (an intermediate page), then calls
    ``apply(request, row, reason)`` for each selected row, each on its own: a refusal
    (``ApplicationError``) of one row is reported and the others go on.

    ``permission`` is the action's ``allowed_permissions`` entry: ``"change"``, or a custom
    one the ModelAdmin answers with ``has_<permission>_permission`` (``permission_check``).
    Django neither lists nor runs the action for a user without it, so a staff user who
    may only look cannot pause, release or resolve anything."""

    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: Any):
        bound = REASON_ACTION_MAX_ROWS
        if len(queryset.values_list("pk", flat=True)[: bound + 1]) > bound:
            modeladmin.message_user(
                request,
                f"{description}: you selected more than {bound} rows. Narrow the list with "
                "its filters or search first (each row is changed and audited on its own).",
                messages.ERROR,
            )
            return None
        reason = (request.POST.get("reason") or "").strip()
        error = ""
        if "apply" in request.POST:
            if reason:
                done, refused = 0, []
                for row in queryset:
                    try:
                        apply(request, row, reason)
                        done += 1
                    except ApplicationError as exc:
                        refused.append(f"{row}: {exc.message}")
                modeladmin.message_user(request, f"{description}: {done} done.", messages.SUCCESS)
                for line in refused[:20]:
                    modeladmin.message_user(request, line, messages.ERROR)
                return None
            error = "Say why: the next operator reads it in the audit log."
        return TemplateResponse(
            request,
            "admin/reason_action.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": description,
                "explanation": explanation,
                "opts": modeladmin.model._meta,
                "queryset": queryset,
                "action": name,
                "select_across": request.POST.get("select_across") == "1",
                "reason": reason,
                "error": error,
            },
        )

    action.__name__ = name
    return admin.action(description=description, permissions=[permission])(action)
