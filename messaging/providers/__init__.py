"""Email provider adapter. Import from here; only ``providers.sendgrid`` knows the SDK."""

from messaging.providers.base import (
    Accepted,
    EmailValidation,
    Permanent,
    ProviderCredentials,
    SendResult,
    Transient,
    ValidationResult,
)
from messaging.providers.payload import (
    CUSTOM_ARG_MESSAGE_ID,
    CUSTOM_ARG_TENANT,
    OutboundEmail,
    PayloadError,
    mail_send_payload_build,
    rfc_message_id_build,
)
from messaging.providers.sendgrid import (
    ProviderConfigError,
    provider_credentials_get,
    provider_email_send,
    provider_email_validate,
)

__all__ = [
    "CUSTOM_ARG_MESSAGE_ID",
    "CUSTOM_ARG_TENANT",
    "Accepted",
    "EmailValidation",
    "OutboundEmail",
    "PayloadError",
    "Permanent",
    "ProviderConfigError",
    "ProviderCredentials",
    "SendResult",
    "Transient",
    "ValidationResult",
    "mail_send_payload_build",
    "provider_credentials_get",
    "provider_email_send",
    "provider_email_validate",
    "rfc_message_id_build",
]
