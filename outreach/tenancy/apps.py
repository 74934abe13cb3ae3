from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "outreach.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        # Registers the API-key scheme with drf-spectacular before any schema is generated.
        from outreach.tenancy import schema  # noqa: F401
