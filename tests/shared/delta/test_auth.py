"""Delta signature against the published algorithm's fixed test vectors (api spec §2.2)."""

from shared.delta.auth import prehash, sign, sign_ws, verify

SECRET = "7b6f39dcf660ec1c7c664f612c60410a2bd0c258416b498bf0311f94228f"


def test_get_vector_includes_v2_and_query() -> None:
    assert prehash("get", "1542110948", "/v2/orders", "product_id=1&state=open") == (
        "GET1542110948/v2/orders?product_id=1&state=open")
    assert sign(SECRET, "GET", "1542110948", "/v2/orders", "?product_id=1&state=open") == (
        "4e38dda3e6477092f360ba70399266d8145630b22bcc34c0ec7f804d5746877a")


def test_post_vector_signs_compact_body() -> None:
    body = '{"order_type":"limit_order","size":3,"side":"buy","limit_price":"0.0005","product_id":16}'
    assert sign(SECRET, "POST", "1542110948", "/v2/orders", "", body) == (
        "21227523c4a51990f857251a8397466b975c46d9afecc62db9abbe5a92f43964")


def test_ws_vector() -> None:
    assert sign_ws(SECRET, "1542110948") == (
        "ded5dbc0ebdbfba13e67d156ae2ed86a674396b933d27b3062b43848e3d6cf61")


def test_verify_rejects_any_changed_byte() -> None:
    sig = sign(SECRET, "GET", "1542110948", "/v2/orders", "?product_id=1")
    assert verify(SECRET, sig, "GET", "1542110948", "/v2/orders", "?product_id=1")
    assert not verify(SECRET, sig, "GET", "1542110949", "/v2/orders", "?product_id=1")
    assert not verify(SECRET, sig, "GET", "1542110948", "/v2/orders", "?product_id=2")


def test_docs_printed_signature_is_the_v1_path_form() -> None:
    # The value printed in Delta's docs (computed upstream by openssl) signs the path without /v2;
    # reproducing it checks our HMAC against an independent implementation.
    assert sign(SECRET, "GET", "1542110948", "/orders", "?product_id=1&state=open") == (
        "ad767fead0bdbe91ba1e4feb142079245fecd66aa5e47a70b40ba1a4c9b4e3db")
