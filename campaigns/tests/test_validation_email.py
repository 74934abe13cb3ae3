"""Local email validation: what an address is stored as, and the verdict it gets."""

import pytest

from campaigns.validation.email import (
    Flag,
    InvalidEmail,
    Status,
    disposable_domains,
    email_normalize,
    email_validate,
)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Jane.Doe@Example.COM", "jane.doe@example.com"),
        ("  jane@example.com \n", "jane@example.com"),
        # IDN domains are stored in their ASCII form, as SMTP and webhook events carry them.
        ("anna@München.de", "anna@xn--mnchen-3ya.de"),
        ("anna@xn--mnchen-3ya.de", "anna@xn--mnchen-3ya.de"),
        ("Jöran@example.com", "jöran@example.com"),
    ],
)
def test_addresses_are_normalised_for_case_insensitive_matching(given, stored):
    check = email_validate(email=given)
    assert check.status == Status.VALID
    assert check.email == stored
    assert email_normalize(email=given) == stored


def test_the_unicode_and_punycode_spellings_of_a_domain_are_the_same_address():
    assert email_normalize(email="X@MÜNCHEN.de") == email_normalize(email="x@xn--mnchen-3ya.de")


@pytest.mark.parametrize(
    ("given", "reason_part"),
    [
        ("plainaddress", "@-sign"),
        ("jane@", "after the @-sign"),
        ("@example.com", "before the @-sign"),
        ("jane doe@example.com", "invalid characters"),
        ("jane@localhost", "not valid"),
        ("jane@example.test", "special-use"),
        ("Jane <jane@example.com>", ""),
        ("a" * 65 + "@example.com", "too long"),
        ("", "blank"),
        ("   ", "blank"),
    ],
)
def test_bad_syntax_is_invalid_with_a_reason(given, reason_part):
    check = email_validate(email=given)
    assert check.status == Status.INVALID
    assert check.reason
    assert reason_part.lower() in check.reason.lower()
    with pytest.raises(InvalidEmail):
        email_normalize(email=given)


@pytest.mark.parametrize("given", [None, 42, ["a@b.com"], {"email": "a@b.com"}])
def test_non_strings_are_invalid(given):
    check = email_validate(email=given)
    assert check.status == Status.INVALID
    assert check.reason == "Must be a string."


def test_overlong_addresses_are_invalid():
    check = email_validate(email="a@" + "b" * 330 + ".com")
    assert check.status == Status.INVALID
    assert "320" in check.reason


@pytest.mark.parametrize(
    "given", ["info@acme.com", "Sales@acme.com", "no-reply@acme.com", "support+eu@acme.com"]
)
def test_role_addresses_are_risky(given):
    check = email_validate(email=given)
    assert check.status == Status.RISKY
    assert check.is_role_address
    assert not check.is_disposable
    assert Flag.ROLE_ADDRESS in check.flags
    assert "role address" in check.reason


@pytest.mark.parametrize(
    "given", ["someone@mailinator.com", "x@YOPMAIL.com", "y@inbox.guerrillamail.com"]
)
def test_disposable_domains_are_risky(given):
    check = email_validate(email=given)
    assert check.status == Status.RISKY
    assert check.is_disposable
    assert "disposable" in check.reason


def test_a_role_address_on_a_disposable_domain_has_both_flags():
    check = email_validate(email="admin@mailinator.com")
    assert check.status == Status.RISKY
    assert check.flags == {Flag.ROLE_ADDRESS, Flag.DISPOSABLE}


def test_a_person_at_a_company_that_merely_contains_a_role_word_is_valid():
    assert email_validate(email="information.officer.jane@acme.com").status == Status.VALID
    assert email_validate(email="jane@notmailinator.com").status == Status.VALID


def test_the_bundled_disposable_list_is_loaded_lower_case_without_comments():
    domains = disposable_domains()
    assert "mailinator.com" in domains
    assert all(domain == domain.lower() and not domain.startswith("#") for domain in domains)


def test_mx_check_is_off_by_default_so_validation_needs_no_network():
    # An unregistered domain passes the local checks; only check_mx=True would look it up.
    check = email_validate(email="jane@no-such-domain-for-outreach-tests.com")
    assert check.status == Status.VALID


@pytest.mark.parametrize(
    "given",
    [
        "jane@example.com",
        "Jane.Doe+tag@Sub.Example.co.uk",
        "o'brien@example.ie",
        "a_b-c!#$%&'*+/=?^`{|}~@example.com",
        ".jane@example.com",
        "jane.@example.com",
        "ja..ne@example.com",
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "jane@" + "b" * 63 + ".com",
        "jane@" + "b" * 64 + ".com",
        "jane@" + ".".join(["c" * 60] * 4) + ".com",
        "jane@-example.com",
        "jane@example-.com",
        "jane@exa_mple.com",
        "jane@example",
        "jane@example.123",
        "jane@1.2.3.4",
        "jane@example.local",
        "jane@example..com",
        "jane@EXAMPLE.COM",
        "jane@xn--mnchen-3ya.de",
        "jane@xn--zz.com",
        "jane@@example.com",
        "jane@example.com.",
    ],
)
def test_the_fast_path_for_plain_ascii_agrees_with_email_validator(given):
    from campaigns.validation import email as module

    try:
        full = module._normalized(module._syntax(given, check_mx=False))
    except InvalidEmail:
        full = None
    fast = module._fast_normalized(given)
    if fast is not None:
        assert fast == full
    check = email_validate(email=given)
    if full is None:
        assert check.status == Status.INVALID
    else:
        assert check.email == email_normalize(email=given) == full
