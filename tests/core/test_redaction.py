from core.redaction import body_for_storage, cap, redact, redact_text


def test_sensitive_keys_are_redacted_at_any_depth_in_any_spelling():
    # given
    payload = {
        "id": "cus_1",
        "Password": "p",
        "client_secret": "s",
        "access-token": "t",
        "apiKey": "k",
        "AUTHORIZATION": "Bearer x",
        "customer": {"EmailAddress": "a@b.example", "phone_number": "+1 555", "name": "Ada"},
        "sources": [{"card": {"number": "4242", "exp": "12/30"}}, {"iban": "DE89"}],
        "tax_id": "GB1",
        "shipping_address": {"city": "Leeds"},
        "amount": "10.00",
    }
    # when
    redacted = redact(payload)
    # then
    assert redacted == {
        "id": "cus_1",
        "Password": "[redacted]",
        "client_secret": "[redacted]",
        "access-token": "[redacted]",
        "apiKey": "[redacted]",
        "AUTHORIZATION": "[redacted]",
        "customer": {"EmailAddress": "[redacted]", "phone_number": "[redacted]", "name": "Ada"},
        "sources": [{"card": "[redacted]"}, {"iban": "[redacted]"}],
        "tax_id": "[redacted]",
        "shipping_address": "[redacted]",
        "amount": "10.00",
    }
    assert payload["customer"]["EmailAddress"] == "a@b.example"


def test_free_text_has_emails_and_long_numbers_masked():
    # when
    text = redact_text("contact ap@northwind.example or +44 20 7946 0000, card 4242424242424242")
    # then
    assert text == "contact [redacted] or [redacted], card [redacted]"


def test_cap_keeps_short_text_and_marks_cut_text_within_the_limit():
    # when
    short = cap("héllo", max_bytes=100)
    cut = cap("é" * 100, max_bytes=60)
    # then
    assert short == "héllo"
    assert cut == "é" * 17 + "…[truncated, 200 bytes]"
    assert len(cut.encode()) <= 60


def test_body_for_storage_handles_json_text_bytes_and_forms():
    # when / then
    assert body_for_storage(None, max_bytes=100) == ""
    assert body_for_storage(b'{"email": "a@b.example"}', max_bytes=100) == '{"email": "[redacted]"}'
    assert body_for_storage({"card[number]": "4242"}, max_bytes=100) == (
        '{"card[number]": "[redacted]"}'
    )
    assert body_for_storage("plain a@b.example", max_bytes=100) == "plain [redacted]"
