from __future__ import annotations

import pytest

from orchestrator_contract.hostnames import MAX_LENGTH, Hostname, parse_hostname


def _name_of_length(length: int) -> str:
    """A valid-looking name of exactly `length` characters: 63-char labels, then a shorter one."""
    labels: list[str] = []
    remaining = length
    while remaining > 0:
        size = min(63, remaining)
        labels.append("a" * size)
        remaining -= size + 1
    name = ".".join(labels)
    # The last label may be one short because of the dots; pad it to hit the length exactly.
    return name + "b" * (length - len(name))


def test_lower_cases_the_name() -> None:
    host = parse_hostname("Hi.Example.COM")
    assert host == "hi.example.com"
    assert isinstance(host, Hostname)


@pytest.mark.parametrize(
    "value",
    [
        "example.com",
        "a.b",
        "xn--bcher-kva.example",
        "xn--80ak6aa92e.com",
        "my-site.example.co.uk",
        "0day.example.com",
        "a1.b2",
        "a-b-c.example.com",
    ],
)
def test_accepts_rfc1123_names(value: str) -> None:
    assert parse_hostname(value) == value


def test_accepts_a_63_character_label() -> None:
    name = "a" * 63 + ".example.com"
    assert parse_hostname(name) == name


def test_accepts_a_253_character_name() -> None:
    name = _name_of_length(MAX_LENGTH)
    assert len(name) == 253
    assert parse_hostname(name) == name


def test_refuses_a_64_character_label() -> None:
    with pytest.raises(ValueError, match="63"):
        parse_hostname("a" * 64 + ".example.com")


def test_refuses_a_254_character_name() -> None:
    name = _name_of_length(MAX_LENGTH + 1)
    assert len(name) == 254
    with pytest.raises(ValueError, match="253"):
        parse_hostname(name)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("localhost", id="single-label"),
        pytest.param("-a.example.com", id="leading-hyphen"),
        pytest.param("a-.example.com", id="trailing-hyphen"),
        pytest.param("a.example-", id="trailing-hyphen-tld"),
        pytest.param("a_b.example.com", id="underscore"),
        pytest.param("a b.example.com", id="space"),
        pytest.param("a`.example.com", id="backtick"),
        pytest.param("a.com`)", id="backtick-paren"),
        pytest.param("a(b).example.com", id="parentheses"),
        pytest.param("a.com||b.com", id="pipes"),
        pytest.param("a.com || b.com", id="pipes-spaced"),
        pytest.param("a.com&&b.com", id="ampersands"),
        pytest.param("a.com\nb.com", id="newline"),
        pytest.param("a.com\n", id="trailing-newline"),
        pytest.param("\na.com", id="leading-newline"),
        pytest.param("a.com\r", id="carriage-return"),
        pytest.param("a.com\x00", id="nul"),
        pytest.param("ex\u0430mple.com", id="cyrillic-a"),
        pytest.param("b\u00fccher.example", id="non-ascii"),
        pytest.param("example\uff0ecom", id="fullwidth-dot"),
        pytest.param("example\u3002com", id="ideographic-dot"),
        pytest.param("\u212aelvin.example", id="kelvin-sign-lowercases-to-k"),
        pytest.param("PathPrefix(`/`)", id="pathprefix"),
        pytest.param("HostRegexp(`.*`)", id="hostregexp"),
        pytest.param("a.com`) || PathPrefix(`/", id="rule-injection"),
        pytest.param("a..com", id="empty-label"),
        pytest.param(".a.com", id="leading-dot"),
        pytest.param("a.com.", id="trailing-dot"),
        pytest.param(".", id="dot"),
        pytest.param("*", id="bare-star"),
        pytest.param("*.com", id="wildcard-single-label"),
        pytest.param("*.*.example.com", id="double-wildcard"),
        pytest.param("a.*.example.com", id="inner-wildcard"),
        pytest.param("*a.example.com", id="star-in-label"),
        pytest.param("a.example.com:80", id="port"),
        pytest.param("a.example.com/path", id="slash"),
        pytest.param("user@a.example.com", id="at"),
        pytest.param("::1", id="ipv6"),
        pytest.param("[::1]", id="ipv6-bracketed"),
    ],
)
def test_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_hostname(value)


@pytest.mark.parametrize("value", [None, 1, b"a.example.com", ["a.example.com"]])
def test_refuses_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="string"):
        parse_hostname(value)  # type: ignore[arg-type]


def test_wildcard_parses_as_wildcard() -> None:
    host = parse_hostname("*.Example.com")
    assert host == "*.example.com"
    assert host.is_wildcard
    assert not host.is_ip


def test_ipv4_address_parses_as_ip() -> None:
    host = parse_hostname("1.2.3.4")
    assert host.is_ip
    assert not host.is_wildcard


def test_plain_name_is_neither_wildcard_nor_ip() -> None:
    host = parse_hostname("a.example.com")
    assert not host.is_wildcard
    assert not host.is_ip


@pytest.mark.parametrize("value", ["127.1", "0x7f.0.0.1", "10.0.0.1", "example.123"])
def test_numeric_and_hex_address_forms_count_as_ip(value: str) -> None:
    assert parse_hostname(value).is_ip
