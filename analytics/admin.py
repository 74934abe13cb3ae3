from django.contrib import admin
from django.http import HttpRequest

from analytics.models import FillState

# The admin's "View site" link opens the analytics dashboard.
admin.site.site_url = "/dashboard/"


@admin.register(FillState)
class FillStateAdmin(admin.ModelAdmin):
    """How fresh the analytics are: the 3 a.m. question "are the numbers stuck?"."""

    list_display = ["name", "filled_through", "last_run_at", "last_rows", "last_duration_ms"]
    list_filter = ["name"]
    search_fields = ["name", "last_error"]
    readonly_fields = [*list_display, "last_error"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
