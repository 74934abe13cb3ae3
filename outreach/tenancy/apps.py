from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "outreach.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
