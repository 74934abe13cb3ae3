"""Phone, time zone and country: the stored forms and the reasons for refusal."""

import pytest

from campaigns.validation.fields import country_normalize, phone_normalize, timezone_normalize


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("+14155550100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("0049 30 1234567", "+49301234567"),
        ("+44.20.7946.0958", "+442079460958"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_phone_numbers_are_stored_in_e164(given, stored):
    assert phone_normalize(given) == stored


@pytest.mark.parametrize(
    "given", ["4155550100", "+0123456789", "+1234", "+1234567890123456", "+1 415 CALL NOW"]
)
def test_phone_numbers_that_are_not_e164_are_refused(given):
    with pytest.raises(ValueError, match=r"E\.164"):
        phone_normalize(given)


def test_time_zones_must_be_iana_names():
    assert timezone_normalize("Europe/Berlin") == "Europe/Berlin"
    assert timezone_normalize(" America/New_York ") == "America/New_York"
    assert timezone_normalize("") == ""
    for bad in ("Mars/Olympus", "CEST", "europe/berlin", "+02:00"):
        with pytest.raises(ValueError, match="IANA"):
            timezone_normalize(bad)


def test_countries_are_iso_alpha2_upper_case():
    assert country_normalize("de") == "DE"
    assert country_normalize(" Us ") == "US"
    assert country_normalize("") == ""
    for bad in ("Germany", "DEU", "XX", "U"):
        with pytest.raises(ValueError, match="ISO 3166-1"):
            country_normalize(bad)
