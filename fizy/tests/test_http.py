import io

import pytest
from django.test import RequestFactory

from fizy.lib.http import BodyTooLarge, client_address, read_body_at_most


class CountingStream(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    request = RequestFactory().post("/x", data=b"a" * 100, content_type="application/json")
    request.META["CONTENT_LENGTH"] = "1000000"
    stream = CountingStream(b"a" * 100)
    request._stream = stream
    with pytest.raises(BodyTooLarge) as refused:
        read_body_at_most(request, 64)
    assert refused.value.size == 1_000_000 and stream.bytes_read == 0


def test_a_body_longer_than_declared_is_read_only_up_to_the_limit_plus_one():
    request = RequestFactory().post("/x", data=b"", content_type="application/json")
    request.META["CONTENT_LENGTH"] = "10"  # a lie: 100 KB follow
    stream = CountingStream(b"a" * 100_000)
    request._stream = stream
    with pytest.raises(BodyTooLarge):
        read_body_at_most(request, 64)
    assert stream.bytes_read == 65


def test_a_body_within_the_limit_is_returned():
    request = RequestFactory().post("/x", data=b'{"a": 1}', content_type="application/json")
    assert read_body_at_most(request, 64) == b'{"a": 1}'


def test_the_client_address_is_the_connection_s_unless_proxies_are_trusted(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_address(request) == "10.0.0.5"  # a client's own X-Forwarded-For is not believed
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request) == "203.0.113.7"  # what our one balancer added, not what the client wrote
    settings.TRUSTED_PROXY_COUNT = 3
    assert client_address(request) == "10.0.0.5"  # fewer hops than configured: the connection's


# --- ids, numbers and redirects from a request ---------------------------------------------------

from fizy.lib.http import local_redirect_target, parse_id, parse_int  # noqa: E402


@pytest.mark.parametrize("text", ["", " ", "²", "١٢", "1.5", "1e3", "0x10", "+7", "1_000", "abc", "9" * 20, None, 12])
def test_anything_but_plain_ascii_digits_is_no_number(text):
    assert parse_int(text) is None and parse_id(text) is None


def test_plain_numbers_are_read_and_bounded():
    assert parse_int(" 42 ") == 42 and parse_int("-3") == -3 and parse_id("7") == 7
    assert parse_id("0") is None and parse_id("-1") is None and parse_id(str(2**63)) is None
    assert parse_int("500", default=7, maximum=90) == 7 and parse_int("²", default=7) == 7


@pytest.mark.parametrize("target, expected", [
    ("/orders/12?status=sent", "/orders/12?status=sent"),
    ("TX", "/"), ("carts:cart", "/"), ("https://evil.example/", "/"), ("//evil.example/x", "/"),
    ("/\\evil.example", "/"), ("javascript:alert(1)", "/"), ("", "/"), (None, "/"),
])
def test_next_goes_to_a_local_path_or_home(target, expected):
    assert local_redirect_target(RequestFactory().get("/"), target) == expected
