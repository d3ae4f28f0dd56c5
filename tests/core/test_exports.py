import pytest

from core.exports import spreadsheet_cell


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"),
        ("\t=x", "'\t=x"), ("\r=x", "'\r=x"), ("-12.50", "-12.50"), ("+3", "+3"),
        ("credit check", "credit check"), (None, ""), (42, "42"),
    ],
)  # fmt: skip
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(value, cell):
    assert spreadsheet_cell(value) == cell
