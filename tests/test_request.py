"""URL checking and normalisation, request keys, and the journal's compact request spec."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from shoal.request import (
    Request,
    check_url,
    decode_spec,
    encode_spec,
    invalid_key,
    request_key,
)
from shoal.result import Error, ErrorKind


def checked(text: str) -> URL:
    url = check_url(text)
    assert isinstance(url, URL), url
    return url


def key_of(text: str, **fields: Any) -> bytes:
    request = Request(text, **fields)
    return request_key(request, checked(text))


# -- check_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("http://a.test/", "http://a.test/"),
        ("HTTP://A.TEST/Path", "http://a.test/Path"),
        ("http://a.test:80/", "http://a.test/"),
        ("https://a.test:443/", "https://a.test/"),
        ("http://a.test:8080/", "http://a.test:8080/"),
        ("http://a.test/page#fragment", "http://a.test/page"),
        ("http://a.test/a b", "http://a.test/a%20b"),
        ("http://a.test/%7e", "http://a.test/~"),
        ("http://a.test/./x/../y", "http://a.test/y"),
        ("http://bücher.example/", "http://xn--bcher-kva.example/"),
        ("http://[0:0::1]:8080/", "http://[::1]:8080/"),
        ("http://127.0.0.1/", "http://127.0.0.1/"),
        ("http://user:pw@a.test/", "http://user:pw@a.test/"),
        ("http://a.test/?b=2&a=1", "http://a.test/?b=2&a=1"),  # query order is meaningful
    ],
)
def test_check_url_normalises(text: str, normalised: str) -> None:
    assert str(checked(text)) == normalised


@pytest.mark.parametrize(
    ("text", "kind", "fragment"),
    [
        ("", ErrorKind.INVALID_URL, "empty"),
        (" http://a.test/", ErrorKind.INVALID_URL, "whitespace"),
        ("http://a.test/ ", ErrorKind.INVALID_URL, "whitespace"),
        ("http://a.test/\nx", ErrorKind.INVALID_URL, "control"),
        ("http://a.test/\x00", ErrorKind.INVALID_URL, "control"),
        ("http://a.test/" + "x" * 16_400, ErrorKind.INVALID_URL, "longer than 16384"),
        ("a.test/", ErrorKind.INVALID_URL, "no scheme"),
        ("ftp://a.test/", ErrorKind.UNSUPPORTED_SCHEME, "'ftp'"),
        ("file:///etc/passwd", ErrorKind.UNSUPPORTED_SCHEME, "'file'"),
        ("javascript:alert(1)", ErrorKind.UNSUPPORTED_SCHEME, "'javascript'"),
        ("http:///x", ErrorKind.INVALID_URL, "no host"),
        ("http://a.test:0/", ErrorKind.INVALID_URL, "port 0"),
        ("http://a.test:70000/", ErrorKind.INVALID_URL, "out of range"),
        ("http://[::1/", ErrorKind.INVALID_URL, "IPv6"),
        ("http://-bad.test/", ErrorKind.INVALID_URL, "invalid host name"),
        ("http://bad.test-/", ErrorKind.INVALID_URL, "invalid host name"),
        ("http://.a.test/", ErrorKind.INVALID_URL, "invalid host name"),
        ("http://a%20b.test/", ErrorKind.INVALID_URL, "invalid host name"),
    ],
)
def test_check_url_rejects(text: str, kind: ErrorKind, fragment: str) -> None:
    error = check_url(text)
    assert isinstance(error, Error)
    assert error.kind is kind
    assert fragment in error.message
    assert error.retry is False


def test_check_url_accepts_exactly_the_maximum_length() -> None:
    text = "http://a.test/" + "x" * (16_384 - len("http://a.test/"))
    assert len(text) == 16_384
    assert isinstance(check_url(text), URL)


def test_check_url_rejects_a_lone_surrogate() -> None:
    error = check_url("http://a.test/\udc80")
    assert isinstance(error, Error)
    assert error.kind is ErrorKind.INVALID_URL


# -- request_key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "HTTP://A.TEST/x",
        "http://a.test:80/x",
        "http://a.test/x#top",
        "http://a.test/./x",
        "http://a.test/%78",
    ],
)
def test_equivalent_urls_share_a_key(variant: str) -> None:
    assert key_of(variant) == key_of("http://a.test/x")


def test_idn_and_punycode_share_a_key() -> None:
    assert key_of("http://bücher.example/") == key_of("http://xn--bcher-kva.example/")


def test_empty_path_and_slash_share_a_key() -> None:
    assert key_of("http://a.test") == key_of("http://a.test/")


def test_key_is_sixteen_bytes() -> None:
    assert len(key_of("http://a.test/")) == 16


def test_key_differs_by_url() -> None:
    assert key_of("http://a.test/x") != key_of("http://a.test/y")
    assert key_of("http://a.test/x") != key_of("https://a.test/x")
    assert key_of("http://a.test/?a=1&b=2") != key_of("http://a.test/?b=2&a=1")


def test_key_differs_by_method_but_not_its_case() -> None:
    assert key_of("http://a.test/", method="POST") != key_of("http://a.test/")
    assert key_of("http://a.test/", method="post") == key_of("http://a.test/", method="POST")


def test_key_differs_by_body() -> None:
    none = key_of("http://a.test/", method="POST")
    empty = key_of("http://a.test/", method="POST", body="")
    one = key_of("http://a.test/", method="POST", body="a")
    two = key_of("http://a.test/", method="POST", body="b")
    assert len({none, empty, one, two}) == 4
    # A str body and the same bytes are one body.
    assert one == key_of("http://a.test/", method="POST", body=b"a")


def test_headers_and_meta_do_not_change_the_key() -> None:
    assert key_of("http://a.test/", headers={"X": "1"}, meta={"a": 1}) == key_of("http://a.test/")


def test_id_alone_is_the_key() -> None:
    one = key_of("http://a.test/x", id="job-1")
    assert one == key_of("http://a.test/y", id="job-1", method="POST", body="z")
    assert one != key_of("http://a.test/x", id="job-2")
    assert one != key_of("http://a.test/x")


def test_id_key_cannot_collide_with_a_url_key() -> None:
    # The id and the method/URL forms are hashed under different prefixes.
    assert key_of("http://a.test/", id="GET\0http://a.test/") != key_of("http://a.test/")


def test_invalid_key_is_by_position() -> None:
    assert invalid_key(12) == b"invalid\x0012"
    assert invalid_key(1) != invalid_key(11)
    assert len(invalid_key(1)) != 16  # cannot collide with a real key


# -- encode_spec / decode_spec ----------------------------------------------------------------


def test_plain_request_is_stored_as_the_bare_url() -> None:
    request = Request("http://a.test/x?y=1")
    assert encode_spec(request) == b"http://a.test/x?y=1"
    assert decode_spec(b"http://a.test/x?y=1") == request


def test_url_starting_with_a_brace_is_stored_as_json() -> None:
    request = Request("{weird")
    spec = encode_spec(request)
    assert spec.startswith(b"{")
    assert decode_spec(spec) == request


@pytest.mark.parametrize(
    "request_",
    [
        Request("http://a.test/", method="POST"),
        Request("http://a.test/", headers={"A": "1", "B-c": "two words"}),
        Request("http://a.test/", method="PUT", body="text body ü"),
        Request("http://a.test/", method="PUT", body=b"\x00\xff binary"),
        Request("http://a.test/", method="PUT", body=""),
        Request("http://a.test/", method="PUT", body=b""),
        Request("http://a.test/", id="my-id"),
        Request("http://a.test/", meta={"nested": [1, 2.5, None, True, "s"]}),
        Request("http://a.test/", meta=0),
        Request("http://a.test/", meta=False),
        Request(
            "https://b.test/p",
            method="PATCH",
            headers={"X": "y"},
            body=b"b",
            id="i",
            meta=["m"],
        ),
    ],
)
def test_spec_round_trip(request_: Request) -> None:
    spec = encode_spec(request_)
    assert isinstance(spec, bytes)
    decoded = decode_spec(spec)
    assert decoded == request_
    assert type(decoded.body) is type(request_.body)


def test_bytes_body_is_stored_as_hex() -> None:
    spec = encode_spec(Request("http://a.test/", method="POST", body=b"\x01\x02"))
    assert b'"body_hex":"0102"' in spec


_TOKENS = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-", min_size=1)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    url=st.text(min_size=1),
    method=_TOKENS,
    headers=st.none() | st.dictionaries(_TOKENS, st.text(), min_size=1, max_size=3),
    body=st.none() | st.text() | st.binary(),
    ident=st.none() | st.text(),
    meta=_JSON,
)
def test_spec_round_trip_property(
    url: str,
    method: str,
    headers: dict[str, str] | None,
    body: str | bytes | None,
    ident: str | None,
    meta: Any,
) -> None:
    request = Request(url, method=method, headers=headers, body=body, id=ident, meta=meta)
    assert decode_spec(encode_spec(request)) == request
