"""A local SendGrid-compatible server, so the product runs and is tested offline.

Run it with ``python manage.py sendgrid_emulator --port 8025`` (or ``python -m
messaging.emulator``, which skips Django's start-up). It serves ``POST /v3/mail/send`` and
``POST /v3/validations/email`` like SendGrid, keeps what it accepted (``GET /``, the catcher
page; ``GET /_emulator/messages``), and posts signed Event Webhook batches and Inbound Parse
replies to the tenant's URLs. Every option is listed by ``--help``; ``app`` documents the
control endpoints, ``engagement`` the address tags. The package needs no Django.
"""
