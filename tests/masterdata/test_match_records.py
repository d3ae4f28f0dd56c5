"""Matching a CSV file: ``manage.py match_records`` and the console's upload page."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from masterdata.models import Account, DuplicateCandidate, MergeRecord
from tests import factories
from tests.console.test_permission_matrix import ADMIN, user_for

SITES_CSV = """Id,Site name,Address,Zip,Phone
1,Northside Youth Centers - Riverdale Campus,4410 N Clark St.,60640,(773) 555-0100
2,RIVERDALE CAMPUS,4410 N CLARK,,773-555-0100
3,Hillcrest Association - Riverdale Learning Ctr,2210-16 West Ogden Avenue,60608,(312) 555-0199
4,Riverdale Learning Center,2210 W Ogden,60608,
5,Acme Plumbing,12 High Street,60601,(312) 555-0111
"""
MAP = "legal_name=Site name,address_line1=Address,postcode=Zip,phone=Phone"


def run(tmp_path, content: str | bytes, *extra: str, mapping: str = MAP) -> tuple[dict, str]:
    source = tmp_path / "in.csv"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content, encoding="utf-8")
    out = tmp_path / "pairs.csv"
    from io import StringIO

    stdout = StringIO()
    call_command(
        "match_records", str(source), "--map", mapping, "--id", "Id", "--out", str(out),
        *extra, stdout=stdout,
    )  # fmt: skip
    return json.loads(stdout.getvalue()), out.read_text(encoding="utf-8")


@pytest.mark.django_db
def test_the_command_pairs_rows_within_the_file_and_prints_a_summary(tmp_path):
    # given
    content = SITES_CSV
    # when
    summary, pairs = run(tmp_path, content, "--country", "US")
    # then
    assert pairs.splitlines() == ["id_a,id_b,score,cluster", "1,2,1.000,1", "3,4,0.998,2"]
    assert {key: summary[key] for key in ("records", "accounts", "pairs", "clusters")} == {
        "records": 5, "accounts": 0, "pairs": 2, "clusters": 2,
    }  # fmt: skip
    assert summary["threshold"] == 0.5
    assert summary["model"]["converged"] is True


@pytest.mark.django_db
def test_the_command_pairs_rows_with_the_accounts_they_already_are(tmp_path):
    # given
    account = factories.account(
        legal_name="Riverdale Learning Center", country="US", currency="USD",
        address_line1="2210 W Ogden Ave", postcode="60608", phone="(312) 555-0199",
    )  # fmt: skip
    # when
    summary, pairs = run(tmp_path, SITES_CSV, "--country", "US", "--against-accounts")
    # then
    assert pairs.splitlines() == [
        "id_a,id_b,score,cluster",
        f"3,{account.enterprise_id},1.000,1",
        f"4,{account.enterprise_id},1.000,1",
    ]
    assert (summary["accounts"], summary["pairs"]) == (1, 2)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "mapping", "message"),
    [
        (SITES_CSV, "legal_name=Name", "the header has no column 'Name'; it has 'Id', "
         "'Site name', 'Address', 'Zip', 'Phone'"),
        (SITES_CSV, "name=Site name", "--map names an unknown field 'name'; known: "
         "legal_name, address_line1, address_line2, city, postcode, phone, tax_id, domain, "
         "email, country"),
        (SITES_CSV, "postcode=Zip", "--map must say which column holds legal_name"),
        ("Id,Site name\n1,Acme\n1,Acme Ltd\n", MAP.split(",")[0], "id '1' is on line 2 and "
         "line 3"),
        ("Id,Site name\n,Acme\n", MAP.split(",")[0], "line 2 has no id in column 'Id'"),
        ("", MAP.split(",")[0], "the file is empty: it needs a header row and at least one row"),
        ("Id,Site name\n", MAP.split(",")[0], "the file has a header but no rows"),
        ("Id,Site name\n1,Acme,extra\n", MAP.split(",")[0],
         "line 2 has more cells than the header"),
        (b"Id,Site name\n1,Caf\xe9\n", MAP.split(",")[0],
         "the file is not UTF-8 text (byte 18); save it as CSV UTF-8"),
    ],
)  # fmt: skip
def test_the_command_refuses_bad_input_with_what_to_fix(tmp_path, content, mapping, message):
    # given
    before = Account.objects.count(), DuplicateCandidate.objects.count()
    # when
    with pytest.raises(CommandError) as refused:
        run(tmp_path, content, mapping=mapping)
    # then
    assert str(refused.value) == message
    assert not (tmp_path / "pairs.csv").exists()
    assert (Account.objects.count(), DuplicateCandidate.objects.count()) == before


@pytest.mark.django_db
def test_the_command_refuses_a_file_that_is_not_there(tmp_path):
    # when
    with pytest.raises(CommandError) as refused:
        call_command(
            "match_records", str(tmp_path / "nope.csv"), "--map", MAP, "--id", "Id",
            "--out", str(tmp_path / "pairs.csv"),
        )  # fmt: skip
    # then
    assert str(refused.value) == f"no such file: {tmp_path / 'nope.csv'}"


# --- The upload page --------------------------------------------------------------------------


def upload(content: bytes = SITES_CSV.encode(), **extra: str) -> dict:
    fields = {
        "file": SimpleUploadedFile("legacy.csv", content, content_type="text/csv"),
        "id_column": "Id", "country": "US", "map_legal_name": "Site name",
        "map_address_line1": "Address", "map_postcode": "Zip", "map_phone": "Phone",
    }  # fmt: skip
    fields.update(extra)
    return fields


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["data_steward", ADMIN])
def test_a_steward_uploads_a_file_and_sees_its_pairs(client, who):
    # given
    client.force_login(user_for(who))
    # when
    response = client.post(reverse("match-file"), upload())
    # then
    assert response.status_code == 200
    assert [
        (row["id_a"], row["id_b"], row["score"], row["cluster"]) for row in response.context["rows"]
    ] == [("1", "2", "1.000", 1), ("3", "4", "0.998", 2)]
    assert response.context["summary"]["records"] == 5
    assert "Northside Youth Centers - Riverdale Campus" in response.content.decode()


@pytest.mark.django_db
def test_the_pairs_download_is_the_commands_file(client):
    # given
    client.force_login(user_for("data_steward"))
    # when
    response = client.post(reverse("match-file"), upload(format="csv"))
    # then
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="pairs.csv"'
    assert response.content.decode().splitlines() == [
        "id_a,id_b,score,cluster", "1,2,1.000,1", "3,4,0.998,2",
    ]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"map_legal_name": "Name"}, "the header has no column &#x27;Name&#x27;"),
        ({"id_column": ""}, "say which column holds each row&#x27;s id"),
        ({"threshold": "2"}, "the threshold is a probability between 0 and 1"),
        ({"country": "USA"}, "country &#x27;USA&#x27; is not a two-letter country code"),
        ({"file": ""}, "choose a CSV file to upload"),
    ],
)
def test_a_bad_upload_is_refused_with_what_to_fix(client, fields, message):
    # given
    client.force_login(user_for("data_steward"))
    data = {key: value for key, value in upload(**fields).items() if value != ""}
    # when
    response = client.post(reverse("match-file"), data)
    # then
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "summary" not in response.context


@pytest.mark.django_db
def test_a_file_over_the_size_limit_is_refused(client, monkeypatch):
    # given
    monkeypatch.setattr("masterdata.views.MATCH_FILE_MAX_BYTES", 100)
    client.force_login(user_for("data_steward"))
    # when
    response = client.post(reverse("match-file"), upload())
    # then
    assert response.status_code == 400
    assert "the file is larger than 0 MB; use manage.py match_records" in (
        response.content.decode()
    )


@pytest.mark.django_db
def test_a_file_over_the_row_limit_is_refused(client, monkeypatch):
    # given
    monkeypatch.setattr("masterdata.views.MATCH_FILE_MAX_ROWS", 3)
    client.force_login(user_for("data_steward"))
    # when
    response = client.post(reverse("match-file"), upload())
    # then
    assert response.status_code == 400
    assert "the file has more than 3 rows; split it" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["auditor", "sales_ops", "finance_ops", "integration_support"])
def test_the_upload_page_is_refused_to_roles_that_do_not_steward_data(client, who):
    # given
    client.force_login(user_for(who))
    # when
    shown = client.get(reverse("match-file"))
    posted = client.post(reverse("match-file"), upload())
    # then
    assert (shown.status_code, posted.status_code) == (403, 403)
    assert MergeRecord.objects.count() == 0


@pytest.mark.django_db
def test_the_upload_page_sends_anonymous_visitors_to_sign_in(client):
    # when
    response = client.post(reverse("match-file"), upload())
    # then
    assert (response.status_code, response["Location"]) == (
        302,
        "/login/?next=/duplicates/match-file/",
    )
