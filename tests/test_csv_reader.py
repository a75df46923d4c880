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


@pytest.mark.parametrize(
    "header", ["phone", "Phone (work)", "Mobile", "mobile phone", "Telephone", "Phones"]
)
def test_phone_header_variants(header: str) -> None:
    assert field_for_header(header) == "phones"


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("Company", "company"),
        ("organization", "company"),
        ("Organisation", "company"),
        ("Company Name", "company"),
        ("title", "title"),
        ("Job Title", "title"),
        ("job_title", "title"),
        ("TAGS", "tags"),
        ("City", "city"),
        ("country", "country"),
        ("Location", "location"),
    ],
)
def test_company_title_tags_and_location_header_variants(header: str, column: str) -> None:
    assert field_for_header(header) == column


@pytest.mark.parametrize("header", ["Name", "notes", "", "email domain", "Owner", "State"])
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
    path = write(tmp_path, "First Name,Notes,Owner,Last Name\n" + rows)
    with ContactsCsv.open(path) as csv_file:
        assert csv_file.ignored_columns == ["Notes", "Owner"]
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


@pytest.mark.parametrize("email", ["EMEA", "not an address", "a@b@c", "ada@", "@x.org", "a@b"])
def test_an_email_that_is_not_an_address_is_reported_and_not_kept(
    tmp_path: Path, email: str
) -> None:
    path = write(tmp_path, f"First Name,Email,Company\nAda,{email},Acme\n")
    (row,) = read_all(path)
    assert row == CsvContact(2, "Ada", None, None, None, company="Acme", problems=row.problems)
    assert row.problems == (f"the email {email!r} is not an address: not imported",)


@pytest.mark.parametrize(
    "email",
    ["ada@example.io", "TOM@Example.IO", "o'brien+crm@mail.example.co.uk", "zoë@exämple.com"],
)
def test_an_address_is_kept_as_written(tmp_path: Path, email: str) -> None:
    (row,) = read_all(write(tmp_path, f"Email\n{email}\n"))
    assert (row.email, row.problems) == (email, ())  # type: ignore[union-attr]


def test_a_row_with_nothing_but_an_invalid_email_is_skipped_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Email\nAda,ada@example.io\n,EMEA\n")
    assert read_all(path)[1] == SkippedRow(
        3, NO_KNOWN_FIELDS, ("the email 'EMEA' is not an address: not imported",)
    )


@pytest.mark.parametrize("value", ['=HYPERLINK("x")', "+44 20", "-sales", "@handle"])
def test_formula_like_cells_are_stored_unchanged(tmp_path: Path, value: str) -> None:
    path = tmp_path / "contacts.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([["First Name", "Description"], ["Ada", value]])
    assert read_all(path) == [CsvContact(2, "Ada", None, None, value)]


def test_a_row_with_more_cells_than_the_header_is_read_and_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "First Name,Last Name,Email\n"
        "Ada,Lovelace,ada@example.io,extra,more\n"
        "Tom\n"
        "Dan,Brooks,dan@example.io,,\n",  # a trailing delimiter shifts nothing
    )
    rows = read_all(path)
    assert rows == [
        CsvContact(2, "Ada", "Lovelace", "ada@example.io", None, problems=rows[0].problems),
        CsvContact(3, "Tom", None, None, None),
        CsvContact(4, "Dan", "Brooks", "dan@example.io", None),
    ]
    (problem,) = rows[0].problems
    assert problem.startswith("2 more cells than the header (from 'extra')")


def test_a_shifted_row_is_reported_with_its_line(tmp_path: Path) -> None:
    # "Lovelace, Ada" unquoted: every later cell moves one column right.
    path = write(
        tmp_path,
        "Name,Email,Description\nAda Lovelace,ada@example.io,Poet\nx,Lovelace, Ada,ada@x.io\n",
    )
    shifted = read_all(path)[1]
    assert shifted.line == 3 and len(shifted.problems) == 2  # type: ignore[union-attr]
    assert "1 more cell than the header (from 'ada@x.io')" in shifted.problems[0]  # type: ignore[union-attr]
    assert "'Lovelace' is not an address" in shifted.problems[1]  # type: ignore[union-attr]


def test_a_row_without_known_fields_is_skipped_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "First Name,Notes,Email,Tags\nAda,,,\n ,+1 555,  ,\n,,,\n,,,;\n")
    assert read_all(path) == [
        CsvContact(2, "Ada", None, None, None),
        SkippedRow(3, NO_KNOWN_FIELDS),
        SkippedRow(4, NO_KNOWN_FIELDS),
        SkippedRow(5, NO_KNOWN_FIELDS),  # a tags cell without a tag
    ]


# The fields beyond the original four


def test_several_phone_columns_give_several_phones_in_column_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Mobile,First Name,Phone (work),Phone\n"
        "+1 (415) 555-0142,Ada,020 7946 0958,\n"
        ",Tom,555 0100; 555-0101,5550100\n"  # one cell of several; the same digits twice
        ",Dan,,\n",
    )
    assert [(row.first_name, row.phones) for row in read_all(path)] == [  # type: ignore[union-attr]
        ("Ada", ("+1 (415) 555-0142", "020 7946 0958")),
        ("Tom", ("555 0100", "555-0101")),
        ("Dan", ()),
    ]


def test_title_company_and_location_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "first_name,Job Title,Organization,City,Country\n"
        "Ada,Programmer,Analytical Engines,London,UK\n"
        "Tom,,,,Japan\n"
        "Dan,,,Berlin,\n",
    )
    rows = read_all(path)
    assert [(r.title, r.company, r.location) for r in rows] == [  # type: ignore[union-attr]
        ("Programmer", "Analytical Engines", "London, UK"),
        (None, None, "Japan"),
        (None, None, "Berlin"),
    ]


def test_a_location_column_wins_over_city_and_country(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'Name,City,Location,Country\nAda,Paris,"Ockham, UK",France\nTom,Paris,,France\n'
    )
    assert [r.location for r in read_all(path)] == ["Ockham, UK", "Paris, France"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("cell", "tags"),
    [
        ("vip", ("vip",)),
        ("vip, customer ,EMEA", ("vip", "customer", "EMEA")),
        ("vip; customer;", ("vip", "customer")),
        ("Smith, Jones & Co; vip", ("Smith, Jones & Co", "vip")),  # semicolons first
        ("vip;vip; VIP", ("vip", "VIP")),
    ],
)
def test_tags_are_one_cell_separated_by_commas_or_semicolons(
    tmp_path: Path, cell: str, tags: tuple
) -> None:
    path = tmp_path / "contacts.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([["Email", "Tags"], ["ada@example.io", cell]])
    assert read_all(path)[0].tags == tags  # type: ignore[union-attr]


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
    message = unusable(write(tmp_path, "Name,Owner\nAda Lovelace,Tom\n"))
    assert "no usable header" in message
    assert "'Name', 'Owner'" in message
    assert "first name, last name, email, description, phone, title, company, tags" in message


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
    path = write(tmp_path, "First Name,Notes\n" + "Ada,555\n" * 10_000 + "Tom,5\x005\n")
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
