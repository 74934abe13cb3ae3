import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach.settings.dev")

application = get_wsgi_application()

# A full garbage collection walks every tracked object, and a loaded app (Django, DRF, the
# URLconf's views, Celery's client, the provider SDKs) is about 140,000 of them that never
# die. Parsing a 1,000-event webhook body makes enough objects to start one every few POSTs,
# and under load each took 50-200 ms while every request in the process waited: the slow
# tail of the webhook POST. The URLconf is loaded now (instead of on the first request) and
# everything alive at this point is moved out of the collector's sight (gc.freeze); full
# collections then walk only what requests leave behind.
get_resolver().url_patterns  # noqa: B018 (imports every view module)
gc.freeze()
