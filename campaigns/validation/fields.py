"""Normalisers for the other contact fields of a lead: phone (E.164), time zone, country.

Each returns the stored form or raises ``ValueError`` with a reason fit to show a user.
"""

import re
from functools import lru_cache
from zoneinfo import available_timezones

# ISO 3166-1 alpha-2, officially assigned codes.
_ISO_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
ISO_COUNTRIES = frozenset(_ISO_CODES.split())

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Separators people type inside numbers: "+1 (415) 555-0100", "+44.20.7946.0958".
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def phone_normalize(value: str) -> str:
    """E.164 (``+`` then 7 to 15 digits, no leading zero). Blank stays blank."""
    if not value.strip():
        return ""
    compact = _PHONE_SEPARATORS.sub("", value.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _E164.match(compact):
        raise ValueError(
            "Enter a phone number in E.164 format: '+' and the country code, "
            "then 7 to 15 digits in all (e.g. +14155550100)."
        )
    return compact


def timezone_normalize(value: str) -> str:
    """An IANA time-zone name as zoneinfo knows it (``Europe/Berlin``). Blank stays blank."""
    value = value.strip()
    if not value:
        return ""
    if value not in _zones():
        raise ValueError(f"'{value}' is not an IANA time zone (e.g. 'Europe/Berlin').")
    return value


def country_normalize(value: str) -> str:
    """ISO 3166-1 alpha-2, upper-cased (``de`` → ``DE``). Blank stays blank."""
    value = value.strip().upper()
    if not value:
        return ""
    if value not in ISO_COUNTRIES:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code (e.g. 'DE').")
    return value
