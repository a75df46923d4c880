"""The CSV reader: which files it accepts, what it reads from them, how it refuses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from contactbook.contacts.csv_reader import (
    FIELD_SIZE_LIMIT,
    NO_KNOWN_FIELDS,
    ContactsCsv,
    CsvContact,
    SkippedRow,
    UnusableCsvError,
    field_for_header,
)


def write(tmp_path: Path, content: str | bytes, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def read_all(path: Path) -> list[CsvContact | SkippedRow]:
    with ContactsCsv.open(path) as csv_file:
        return list(csv_file.rows())


def unusable(path: Path) -> str:
    with pytest.raises(UnusableCsvError) as caught:
        read_all(path)
    return str(caught.value)


# Header names


@pytest.mark.parametrize(
    "header",
    [
        "first_name",
        "First Name",
        "first name",
        "FirstName",
        "first-name",
        "FIRST NAME",
        "given name",
    ],
)
def test_first_name_header_variants(header: str) -> None:
    assert field_for_header(header) == "first_name"


@pytest.mark.parametrize(
    "header", ["last_name", "Last Name", "lastname", "Surname", "family name", "Last-Name"]
)
def test_last_name_header_variants(header: str) -> None:
    assert field_for_header(header) == "last_name"


@pytest.mark.parametrize(
    "header",
    ["Email", "email", "e-mail", "E-mail address", "email (work)", "Email Address", " EMAIL "],
)
def test_email_header_variants(header: str) -> None:
    assert field_for_header(header) == "email"


@pytest.mark.parametrize("header", ["description", "Description", "Bio", "about", "biography"])
def test_description_header_variants(header: str) -> None:
    assert field_for_header(header) == "description"


@pytest.mark.parametrize("header", ["Name", "Phone", "notes", "company", "", "email domain"])
def test_other_headers_are_not_known_fields(header: str) -> None:
    assert field_for_header(header) is None


def test_columns_map_each_field_to_its_header_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "E-mail (work),Bio,Surname,First Name\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.columns == {
            "email": "E-mail (work)",
            "description": "Bio",
            "last_name": "Surname",
            "first_name": "First Name",
        }
        assert csv_file.ignored_columns == []


def test_columns_are_read_by_header_not_by_position(tmp_path: Path) -> None:
    path = write(
        tmp_path, "Email,Description,Last Name,First Name\nada@example.io,Hi,Lovelace,Ada\n"
    )
    assert read_all(path) == [CsvContact(2, "Ada", "Lovelace", "ada@example.io", "Hi")]


def test_other_columns_are_ignored_and_listed_once(tmp_path: Path) -> None:
    rows = "".join(f"Ada,+1 555 {n},Acme,Lovelace\n" for n in range(3))
    path = write(tmp_path, "First Name,Phone,Company,Last Name\n" + rows)
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.ignored_columns == ["Phone", "Company"]
        contacts = list(csv_file.rows())
    assert [c.last_name for c in contacts if isinstance(c, CsvContact)] == ["Lovelace"] * 3


def test_a_second_column_for_the_same_field_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "Email (work),Email (personal)\nwork@example.io,home@example.io\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.columns == {"email": "Email (work)"}
        assert csv_file.ignored_columns == ["Email (personal)"]
        assert [row.email for row in csv_file.rows()] == ["work@example.io"]  # type: ignore[union-attr]


def test_an_unnamed_column_is_listed_as_ignored_by_position(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Last Name,\nAda,Lovelace,\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.ignored_columns == ["column 3 (no header)"]


def test_header_only_file_has_zero_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Last Name,Email,Description\n")
    assert read_all(path) == []


def test_blank_lines_before_the_header_are_passed_over(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\nFirst Name\nAda\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.header_line == 3
        assert list(csv_file.rows()) == [CsvContact(4, "Ada", None, None, None)]


# Encodings and line endings


def test_utf8_with_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffFirst Name,Last Name\nFrançois,Müller\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.columns == {"first_name": "First Name", "last_name": "Last Name"}
        assert list(csv_file.rows()) == [CsvContact(2, "François", "Müller", None, None)]


def test_utf8_without_byte_order_mark_keeps_any_script(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Last Name\nЗоя,Παπαδοπούλου\nSøren,López\n")
    assert read_all(path) == [
        CsvContact(2, "Зоя", "Παπαδοπούλου", None, None),
        CsvContact(3, "Søren", "López", None, None),
    ]


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Email\r\nAda,ada@example.io\r\nTom,tom@example.io\r\n")
    assert read_all(path) == [
        CsvContact(2, "Ada", None, "ada@example.io", None),
        CsvContact(3, "Tom", None, "tom@example.io", None),
    ]


def test_lf_line_endings_and_no_final_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Email\nAda,ada@example.io\nTom,tom@example.io")
    assert [row.line for row in read_all(path)] == [2, 3]


def test_quoted_newlines_stay_in_the_value_and_later_lines_keep_their_numbers(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "First Name,Description\n"
        'Ada,"Line one\nline two\nline three"\n'
        'Tom,"Windows\r\nstyle"\r\n'
        "Dan,Plain\n",
    )
    assert read_all(path) == [
        CsvContact(2, "Ada", None, None, "Line one\nline two\nline three"),
        CsvContact(5, "Tom", None, None, "Windows\r\nstyle"),
        CsvContact(7, "Dan", None, None, "Plain"),
    ]


# Delimiters


def test_semicolon_delimited_header_is_recognised(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name;Last Name;Email\nAda;Lovelace;ada@example.io\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.delimiter == ";"
        assert list(csv_file.rows()) == [CsvContact(2, "Ada", "Lovelace", "ada@example.io", None)]


def test_tab_delimited_header_is_recognised(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name\tDescription\nAda\tMaths, engines; poetry\n")
    assert read_all(path) == [CsvContact(2, "Ada", None, None, "Maths, engines; poetry")]


def test_comma_wins_when_the_header_is_ambiguous(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Description;Notes\nAda,x;y\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.delimiter == ","


def test_excel_sep_line_sets_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "sep=;\r\nFirst Name;Email\r\nAda;ada@example.io\r\n")
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.header_line == 2
        assert list(csv_file.rows()) == [CsvContact(3, "Ada", None, "ada@example.io", None)]


def test_excel_sep_line_with_a_comma(tmp_path: Path) -> None:
    path = write(tmp_path, "sep=,\nFirst Name,Email\nAda,ada@example.io\n")
    assert read_all(path) == [CsvContact(3, "Ada", None, "ada@example.io", None)]


# Row contents


def test_values_are_stripped_and_empty_ones_are_none(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Last Name,Email,Description\n  Ada \t, , TOM@Example.IO ,\n")
    assert read_all(path) == [CsvContact(2, "Ada", None, "TOM@Example.IO", None)]


def test_email_keeps_its_case_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "Email\nTom.Brooks@NorthWind.io\n")
    assert read_all(path) == [CsvContact(2, None, None, "Tom.Brooks@NorthWind.io", None)]


def test_an_email_that_is_not_an_address_is_kept_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Email\nAda,not an address\nTom,a@b@c\n")
    assert [row.email for row in read_all(path)] == ["not an address", "a@b@c"]  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ['=HYPERLINK("x")', "+44 20", "-sales", "@handle"])
def test_formula_like_cells_are_stored_unchanged(tmp_path: Path, value: str) -> None:
    path = tmp_path / "contacts.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([["First Name", "Description"], ["Ada", value]])
    assert read_all(path) == [CsvContact(2, "Ada", None, None, value)]


def test_extra_cells_are_ignored_and_missing_cells_are_none(tmp_path: Path) -> None:
    path = write(
        tmp_path, "First Name,Last Name,Email\nAda,Lovelace,ada@example.io,extra,more\nTom\n"
    )
    assert read_all(path) == [
        CsvContact(2, "Ada", "Lovelace", "ada@example.io", None),
        CsvContact(3, "Tom", None, None, None),
    ]


def test_a_row_without_known_fields_is_skipped_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Phone,Email\nAda,,\n ,+1 555,  \n,,\n")
    assert read_all(path) == [
        CsvContact(2, "Ada", None, None, None),
        SkippedRow(3, NO_KNOWN_FIELDS),
        SkippedRow(4, NO_KNOWN_FIELDS),
    ]


def test_blank_lines_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name\r\nAda\r\n\r\nTom\n\n\nDan\n")
    assert read_all(path) == [
        CsvContact(2, "Ada", None, None, None),
        SkippedRow(3, NO_KNOWN_FIELDS),
        CsvContact(4, "Tom", None, None, None),
        SkippedRow(5, NO_KNOWN_FIELDS),
        SkippedRow(6, NO_KNOWN_FIELDS),
        CsvContact(7, "Dan", None, None, None),
    ]


# Progress


def test_size_and_position_let_a_caller_show_progress(tmp_path: Path) -> None:
    row = "Ada,Lovelace,ada@example.io,Analytical engines and poetry\n"
    path = write(tmp_path, "First Name,Last Name,Email,Description\n" + row * 20_000)
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.size == path.stat().st_size
        positions = [csv_file.position() for _ in csv_file.rows()]
        assert positions == sorted(positions)
        assert 0 < positions[0] < csv_file.size // 10
        assert positions[-1] == csv_file.size
    assert csv_file.position() == csv_file.size


def test_the_file_is_closed_after_the_with_block(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name\nAda\n")
    with ContactsCsv.open(path) as csv_file:
        pass
    assert csv_file._text.closed


# Unusable files


def test_missing_file_is_unusable(tmp_path: Path) -> None:
    message = unusable(tmp_path / "nowhere.csv")
    assert "nowhere.csv does not exist" in message


def test_directory_is_unusable(tmp_path: Path) -> None:
    message = unusable(tmp_path)
    assert "is a directory" in message


def test_empty_file_is_unusable(tmp_path: Path) -> None:
    assert "is empty" in unusable(write(tmp_path, b""))


def test_file_of_blank_lines_and_a_bom_is_unusable(tmp_path: Path) -> None:
    assert "is empty" in unusable(write(tmp_path, "\ufeff\r\n\n  \n"))


def test_binary_file_is_unusable(tmp_path: Path) -> None:
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "photo.csv")
    assert "photo.csv is a binary file" in unusable(path)


def test_excel_workbook_is_unusable_with_a_hint(tmp_path: Path) -> None:
    message = unusable(write(tmp_path, b"PK\x03\x04\x14\x00\x06\x00", "contacts.xlsx"))
    assert "Excel workbook" in message
    assert "CSV UTF-8" in message


def test_utf16_file_is_unusable_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name\r\nAda\r\n".encode("utf-16"))
    assert "UTF-16" in unusable(path)


def test_file_with_no_known_column_is_unusable(tmp_path: Path) -> None:
    message = unusable(write(tmp_path, "Name,Phone\nAda Lovelace,+1 555\n"))
    assert "no usable header" in message
    assert "'Name', 'Phone'" in message
    assert "first name, last name, email, description" in message


def test_file_without_a_header_row_says_so(tmp_path: Path) -> None:
    message = unusable(write(tmp_path, "Ada,Lovelace,ada@example.io\n"))
    assert "header row seems to be missing" in message


def test_not_utf8_at_the_start_is_unusable_with_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "First Name,Last Name\nAda,Lovelace\nFran\xe7ois,Petit\n".encode("cp1252")
    )
    message = unusable(path)
    assert message == (
        f"{path} is not UTF-8 text (invalid byte 0xe7 at line 3): "
        "save it as UTF-8 (in Excel: File > Save As > CSV UTF-8) and import again"
    )


def test_not_utf8_late_in_the_file_is_unusable_when_reached(tmp_path: Path) -> None:
    good = "Ada,Lovelace,ada@example.io,Analytical engines\n" * 5_000  # well past the first chunk
    content = ("First Name,Last Name,Email,Description\n" + good).encode() + b"Bad,\xff\n"
    path = write(tmp_path, content)
    with ContactsCsv.open(path) as csv_file:
        rows = csv_file.rows()
        assert next(rows) == CsvContact(
            2, "Ada", "Lovelace", "ada@example.io", "Analytical engines"
        )
        with pytest.raises(UnusableCsvError) as caught:
            list(rows)
    assert "not UTF-8 text (invalid byte 0xff at line 5002)" in str(caught.value)


def test_a_nul_byte_late_in_the_file_is_unusable_when_reached(tmp_path: Path) -> None:
    good = "Ada,Lovelace\n" * 10_000  # past the first chunk, which is checked on open
    path = write(tmp_path, "First Name,Last Name\n" + good + "To\x00m,Brooks\n")
    with ContactsCsv.open(path) as csv_file, pytest.raises(UnusableCsvError) as caught:
        list(csv_file.rows())
    assert "line 10002 holds a NUL byte" in str(caught.value)


def test_a_nul_byte_in_an_ignored_column_does_no_harm(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Phone\n" + "Ada,555\n" * 10_000 + "Tom,5\x005\n")
    assert read_all(path)[-1] == CsvContact(10_002, "Tom", None, None, None)


def test_a_character_cut_off_at_the_end_of_the_file_is_unusable(tmp_path: Path) -> None:
    content = ("First Name\n" + "Ada\n" * 20_000).encode() + "Zoë".encode()[:-1]
    message = unusable(write(tmp_path, content))
    assert "not UTF-8 text (invalid byte 0xc3 at line 20002)" in message


def test_a_multibyte_character_across_read_chunks_is_fine(tmp_path: Path) -> None:
    # "é" is two bytes; shifting it over every offset puts it across chunk boundaries.
    rows = "".join(f"{'x' * (n % 7)}é,Müller\n" for n in range(40_000))
    path = write(tmp_path, "First Name,Last Name\n" + rows)
    assert len(read_all(path)) == 40_000


def test_a_huge_field_is_unusable_and_names_its_line(tmp_path: Path) -> None:
    huge = "x" * (FIELD_SIZE_LIMIT + 1)
    path = write(tmp_path, f"First Name,Description\nAda,short\nTom,{huge}\n")
    message = unusable(path)
    assert "line 3: a field is longer than 1 MiB" in message


def test_an_unclosed_quote_swallowing_the_file_is_unusable(tmp_path: Path) -> None:
    rest = "Tom,Plain text\n" * (FIELD_SIZE_LIMIT // 10)
    path = write(tmp_path, f'First Name,Description\nAda,ok\nDan,"never closed\n{rest}')
    message = unusable(path)
    assert "line 3" in message
    assert "never closed" in message


def test_display_name_names_the_file_in_messages(tmp_path: Path) -> None:
    path = write(tmp_path, b"", "upload-7f3a.tmp")
    with pytest.raises(UnusableCsvError, match=r"^people\.csv is empty"):
        ContactsCsv.open(path, display_name="people.csv")
