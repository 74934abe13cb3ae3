"""How many segments a text costs: the encoding, the single-segment limits (160 GSM-7 septets,
70 UCS-2 code units) and multipart splitting (153 and 67 per part), where a two-place
character (a GSM-7 extension, a UTF-16 surrogate pair) is never cut in two."""

import pytest

from campaigns.plans.sms import sms_segments_count

EURO = "€"  # GSM-7 extension: escape + code, two septets
EMOJI = "😀"  # outside the BMP: a surrogate pair, two UTF-16 code units


def _count(text: str) -> tuple[str, int, int]:
    counted = sms_segments_count(text=text)
    return counted.encoding, counted.characters, counted.segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 0, 0)),
        ("a" * 160, ("GSM-7", 160, 1)),
        ("a" * 161, ("GSM-7", 161, 2)),
        ("a" * 153 * 2, ("GSM-7", 306, 2)),
        ("a" * (153 * 2 + 1), ("GSM-7", 307, 3)),
        # Extensions count twice, and still fit one segment up to 160 places.
        (EURO * 80, ("GSM-7", 160, 1)),
        ("a" * 159 + EURO, ("GSM-7", 161, 2)),
        ("ê" * 70, ("UCS-2", 70, 1)),
        ("ê" * 71, ("UCS-2", 71, 2)),
        ("ê" * 67 * 2, ("UCS-2", 134, 2)),
        ("ê" * (67 * 2 + 1), ("UCS-2", 135, 3)),
        (EMOJI * 35, ("UCS-2", 70, 1)),
        ("a" * 69 + EMOJI, ("UCS-2", 71, 2)),
    ],
    ids=[
        "empty",
        "gsm-160",
        "gsm-161",
        "gsm-153x2",
        "gsm-153x2+1",
        "gsm-80-extensions",
        "gsm-159+extension",
        "ucs-70",
        "ucs-71",
        "ucs-67x2",
        "ucs-67x2+1",
        "ucs-35-emoji",
        "ucs-69+emoji",
    ],
)
def test_segment_limits_at_their_boundaries(text, expected):
    assert _count(text) == expected


def test_a_gsm7_extension_character_is_never_split_across_segments():
    # 152 septets leave one place in the first part: the euro (two) opens the second.
    assert _count("a" * 152 + EURO + "a" * 151) == ("GSM-7", 305, 2)  # second part: 2 + 151
    # One septet more than that, and the third part is needed, though 306 = 2 x 153.
    assert _count("a" * 152 + EURO + "a" * 152) == ("GSM-7", 306, 3)
    # The extension exactly at the end of the first part fits.
    assert _count("a" * 151 + EURO + "a" * 153) == ("GSM-7", 306, 2)


def test_a_surrogate_pair_is_never_split_across_segments():
    assert _count("a" * 66 + EMOJI + "a" * 65) == ("UCS-2", 133, 2)
    assert _count("a" * 66 + EMOJI + "a" * 66) == ("UCS-2", 134, 3)
    assert _count("a" * 65 + EMOJI + "a" * 67) == ("UCS-2", 134, 2)


def test_one_character_outside_gsm7_switches_the_whole_text_to_ucs2():
    assert _count("a" * 100) == ("GSM-7", 100, 1)
    assert _count("a" * 99 + "\u2019") == ("UCS-2", 100, 2)  # a curly quote
