"""The search page in a real browser: Playwright drives Debian's Chromium against the real API.

Every test starts the API on a loopback port over the test database, loads people through
the import pipeline, and uses the page as a person would: typing, arrow keys, clicks.
The only fake is at the network boundary (Playwright answering a search with a 500, or
holding one back), which is how those faults look to a browser anyway.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Error, Page, Route, expect, sync_playwright
from support import LiveServer, free_port, start_server

from contactbook.api.app import create_app
from contactbook.contacts.importer import import_csv

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent
EMPTY_CSV = REPO / "tests" / "data" / "empty.csv"
OUTPUT = REPO / "test-output"
TIMEOUT_MS = 5_000

PEOPLE = """first name,last name,email,description
Ada,Lovelace,ada@analytical.example,Computing pioneer who wrote the first program.
Grace,Hopper,grace.hopper@navy.example,"Compiler pioneer; popularised the word ""debugging""."
Alan,Turing,alan@bletchley.example,Computing pioneer and codebreaker at Bletchley Park.
Katherine,Johnson,kjohnson@nasa.example,Spaceflight pioneer who computed trajectories to the Moon.
Lovisa,Berg,lovisa@fjord.example,Loves lace and knitting; runs a yarn shop in Bergen.
"""


# --------------------------------------------------------------------------- browser


def _install_chromium() -> str | None:
    """Install Debian's chromium when missing; return why it is unavailable, or None."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and apt-get is not available to install it"
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return f"{CHROMIUM} is missing and installing it needs root (apt-get install chromium)"
        sudo = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"]  # CI: no password
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [*sudo, "apt-get", "update"],
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        try:
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=900, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"`{' '.join(command)}` failed: {error}"
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            return f"`{' '.join(command)}` failed (exit {result.returncode}): {lines[-1]}"
    return None if CHROMIUM.exists() else f"chromium was installed but {CHROMIUM} is missing"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    reason = _install_chromium()
    if reason:
        pytest.skip(f"no Chromium for the browser tests: {reason}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# --------------------------------------------------------------------------- site


def build_app(settings):
    return create_app(settings)


@dataclass
class Site:
    """The real API with the page, on a loopback port; can be stopped and started again."""

    settings: object
    port: int = field(default_factory=free_port)
    server: LiveServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # A fresh app each time: a closed connection pool cannot be reopened.
        self.server = start_server(build_app(self.settings), port=self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def people(db_url: str, write_csv) -> str:
    """The database holding the five people above; returns its URL."""
    import_csv(db_url, write_csv(PEOPLE), source="browser test people")
    return db_url


@pytest.fixture
def site(people: str, make_settings) -> Iterator[Site]:
    running = Site(make_settings(contactbook_csv=EMPTY_CSV))
    running.start()
    yield running
    running.stop()


@dataclass
class Tab:
    page: Page
    problems: list[str]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A fresh browser tab (own session storage); fails the test on script errors or CSP."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield Tab(page, problems)
    context.close()
    assert not problems, problems


def add_contacts(url: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Add contacts straight to the table (first, last, email, description)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO contacts (first_name, last_name, email, description, source)"
            " VALUES (%s, %s, %s, %s, 'csv')",
            rows,
        )


def result_names(page: Page):
    return page.locator("#results .result-name")


def type_search(page: Page, text: str) -> None:
    page.locator("#q").press_sequentially(text)


# --------------------------------------------------------------------------- tests


def test_page_and_its_files_carry_the_security_headers(site: Site) -> None:
    for path in ("/", "/static/app.js", "/static/style.css", "/static/missing.js"):
        response = httpx.get(site.url + path)
        assert response.status_code == (404 if "missing" in path else 200), path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(site.url + "/static/..%2Fapi%2Fpage.py").status_code == 404


def test_idle_page_has_focus_in_the_box_and_shows_the_count_and_last_sync(
    site: Site, people: str, tab: Tab
) -> None:
    with psycopg.connect(people, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sync_runs (mode, status, finished_at)"
            " VALUES ('full', 'succeeded', now() - interval '3 hours')"
        )
    page = tab.page
    page.goto(site.url)
    expect(page.locator("#q")).to_be_focused()
    idle = page.locator("#idle")
    expect(idle).to_contain_text("5 contacts to search")
    expect(idle).to_contain_text("Last synced with Nimble 3 hours ago")


def test_part_of_a_surname_shows_that_person_first_with_the_match_marked(
    site: Site, tab: Tab
) -> None:
    page = tab.page
    page.goto(site.url)
    type_search(page, "lovela")
    first = page.locator("#results .result").first
    expect(first.locator(".result-name")).to_have_text("Ada Lovelace")
    expect(first.locator(".result-name mark")).to_have_text("Lovelace")
    expect(first.locator(".result-email")).to_have_attribute(
        "href", "mailto:ada@analytical.example"
    )
    expect(first.locator(".result-bio")).to_contain_text("wrote the first program")
    expect(page.locator("#status")).to_have_text("1 contact found")
    # The query is in the address, so the search can be shared or reloaded.
    assert page.url.endswith("#/?q=lovela")


def test_typing_fast_shows_only_the_answer_for_the_final_text(site: Site, tab: Tab) -> None:
    page = tab.page
    searched: list[str] = []
    held: list[Route] = []

    def hold_the_first_search(route: Route) -> None:
        searched.append(route.request.url)
        if not held:
            held.append(route)  # answered only after the later search has been shown
        else:
            route.continue_()

    page.route("**/api/v1/search?*", hold_the_first_search)
    page.goto(site.url)
    type_search(page, "hopper")
    page.wait_for_function("() => document.getElementById('spinner').classList.contains('on')")
    page.locator("#q").fill("")
    page.locator("#q").press_sequentially("turing", delay=20)
    expect(result_names(page)).to_have_text(["Alan Turing"])

    with contextlib.suppress(Error):  # the page has usually aborted it already
        held[0].continue_()
    page.wait_for_timeout(300)
    expect(result_names(page)).to_have_text(["Alan Turing"])
    assert "text=hopper" in searched[0]
    # Debounced: six quick keystrokes did not make six requests.
    assert len(searched) <= 3, searched


def test_a_slow_answer_shows_the_loading_state(site: Site, tab: Tab) -> None:
    page = tab.page
    held: list[Route] = []
    page.route("**/api/v1/search?*", lambda route: held.append(route))
    page.goto(site.url)
    type_search(page, "hopper")
    expect(page.locator("#state")).to_have_text("Searching…")
    expect(page.locator("#spinner")).to_have_class("spinner on")

    page.unroute("**/api/v1/search?*")
    for route in held:
        with contextlib.suppress(Error):
            route.continue_()
    expect(result_names(page)).to_have_text(["Grace Hopper"])
    expect(page.locator("#spinner")).to_have_class("spinner")
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")


def test_arrow_keys_move_through_results_enter_opens_and_escape_goes_back(
    site: Site, tab: Tab
) -> None:
    page = tab.page
    page.goto(site.url)
    type_search(page, "pioneer")  # a word in several bios
    expect(result_names(page)).not_to_have_count(0)
    names = result_names(page)
    assert names.count() >= 2

    page.keyboard.press("ArrowDown")
    expect(names.nth(0)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(names.nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowDown")
    second = names.nth(1).inner_text()
    second_id = names.nth(1).get_attribute("data-id")

    page.keyboard.press("Enter")
    heading = page.locator("#detail-name")
    expect(heading).to_have_text(second)
    expect(heading).to_be_focused()
    assert page.url.endswith(f"#/contacts/{second_id}")

    page.keyboard.press("Escape")
    expect(page.locator("#search-view")).to_be_visible()
    expect(page.locator("#q")).to_have_value("pioneer")
    expect(page.locator(f'#results .result-name[data-id="{second_id}"]')).to_be_focused()

    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#q")).to_have_value("")
    expect(page.locator("#idle")).to_be_visible()
    expect(page.locator("#results")).to_be_hidden()

    # Enter in the box opens the best match, even before its results are on screen.
    type_search(page, "turing")
    page.keyboard.press("Enter")
    expect(page.locator("#detail-name")).to_have_text("Alan Turing")


def test_a_contact_link_works_when_opened_directly(site: Site, tab: Tab) -> None:
    contact = httpx.get(site.url + "/api/v1/search", params={"text": "hopper"}).json()[0]
    page = tab.page
    page.goto(f"{site.url}/#/contacts/{contact['id']}")
    expect(page.locator("#detail-name")).to_have_text("Grace Hopper")
    expect(page.locator("#detail a[href^='mailto:']")).to_have_text("grace.hopper@navy.example")
    expect(page.locator("#detail")).to_contain_text('popularised the word "debugging"')

    page.goto(f"{site.url}/#/contacts/999999")
    expect(page.locator("#detail-name")).to_have_text("No such contact")


def test_no_results_suggests_fewer_words(site: Site, tab: Tab) -> None:
    page = tab.page
    page.goto(site.url)
    type_search(page, "qqxj zzvw")
    state = page.locator("#state")
    expect(state).to_contain_text("No contacts found")
    expect(state).to_contain_text("Nothing matches “qqxj zzvw”")
    expect(state).to_contain_text("Try fewer words")
    expect(page.locator("#results")).to_be_hidden()

    page.get_by_role("button", name="Search for “qqxj”").click()
    expect(page.locator("#q")).to_have_value("qqxj")
    expect(state).to_contain_text("Nothing matches “qqxj”")
    expect(state).not_to_contain_text("Try fewer words")


def test_a_server_error_shows_a_readable_message_and_retry_works(site: Site, tab: Tab) -> None:
    page = tab.page
    page.route(
        "**/api/v1/search?*",
        lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"detail": "Internal Server Error"}'
        ),
    )
    page.goto(site.url)
    type_search(page, "turing")
    state = page.locator("#state")
    expect(state).to_contain_text("Search failed")
    expect(state).to_contain_text("The server ran into a problem (error 500)")
    expect(page.locator("#results")).to_be_hidden()

    page.unroute("**/api/v1/search?*")
    page.get_by_role("button", name="Retry").click()
    expect(result_names(page)).to_have_text(["Alan Turing"])
    expect(state).to_be_empty()


def test_a_stopped_api_shows_a_readable_message_and_retry_works_once_it_is_back(
    site: Site, tab: Tab
) -> None:
    page = tab.page
    page.goto(site.url)
    type_search(page, "turing")
    expect(result_names(page)).to_have_text(["Alan Turing"])

    site.stop()
    page.locator("#q").fill("")
    type_search(page, "hopper")
    state = page.locator("#state")
    expect(state).to_contain_text("Contact Book can't be reached")
    retry = page.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()

    site.start()
    retry.click()
    expect(result_names(page)).to_have_text(["Grace Hopper"])


def test_more_loads_the_next_page(site: Site, people: str, tab: Tab) -> None:
    add_contacts(
        people,
        [
            (f"Pat{n:02d}", "Example", f"pat{n:02d}@plant.example", "Reliability engineer.")
            for n in range(25)
        ],
    )
    page = tab.page
    page.goto(site.url)
    type_search(page, "engineer")
    expect(result_names(page)).to_have_count(20)
    expect(page.locator("#status")).to_have_text("25 contacts found, showing 20")
    more = page.locator("#more")
    expect(more).to_have_text("More results (5 left)")

    more.click()
    expect(result_names(page)).to_have_count(25)
    expect(more).to_be_hidden()
    expect(page.locator("#status")).to_have_text("25 contacts found")
    ids = result_names(page).evaluate_all("links => links.map(link => link.dataset.id)")
    assert len(set(ids)) == 25
    # Focus lands on the first new result, so keyboard users carry on from there.
    expect(result_names(page).nth(20)).to_be_focused()


def test_more_is_offered_while_pages_come_back_full_whatever_the_count_says(
    site: Site, people: str, tab: Tab
) -> None:
    # X-Total-Count is PostgreSQL's estimate for big results, and estimates can be low.
    add_contacts(
        people,
        [(f"Kim{n:02d}", "Example", None, "Reliability engineer.") for n in range(25)],
    )
    page = tab.page

    def undercount(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "x-total-count": "20"})

    page.route("**/api/v1/search?*", undercount)
    page.goto(site.url)
    type_search(page, "engineer")
    expect(result_names(page)).to_have_count(20)
    expect(page.locator("#status")).to_have_text("20+ contacts found, showing 20")
    more = page.locator("#more")
    expect(more).to_have_text("More results")

    more.click()
    expect(result_names(page)).to_have_count(25)
    expect(more).to_be_hidden()
    expect(page.locator("#status")).to_have_text("25 contacts found")


def test_a_name_holding_markup_is_shown_as_text(site: Site, people: str, tab: Tab) -> None:
    name = "<script>window.pwned = 1</script>"
    last = '<img src=x onerror="window.pwned = 2">'
    add_contacts(people, [(name, last, "mallory@xss.example", "Tries <b>bold</b> things.")])
    page = tab.page
    page.goto(site.url)
    type_search(page, "mallory")
    link = result_names(page).first
    expect(link).to_have_text(f"{name} {last}")
    expect(page.locator("#results .result-bio").first).to_have_text("Tries <b>bold</b> things.")
    assert page.locator("#results script, #results img, #results b").count() == 0

    link.click()
    expect(page.locator("#detail-name")).to_have_text(f"{name} {last}")
    assert page.locator("#detail script, #detail img, #detail b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_token_is_asked_for_once_and_kept_for_the_session(
    people: str, make_settings, tab: Tab
) -> None:
    guarded = Site(make_settings(contactbook_csv=EMPTY_CSV, contactbook_api_tokens="s3cret"))
    guarded.start()
    try:
        page = tab.page
        page.goto(guarded.url)
        token = page.get_by_role("textbox", name="Access token")
        expect(token).to_be_focused()
        token.fill("wrong")
        token.press("Enter")
        expect(page.locator("#token-error")).to_contain_text("not accepted")

        token.fill("s3cret")
        token.press("Enter")
        expect(page.locator("#idle")).to_contain_text("5 contacts to search")
        page.reload()
        type_search(page, "turing")
        expect(result_names(page)).to_have_text(["Alan Turing"])
    finally:
        guarded.stop()


def test_screenshots_of_results_on_a_desktop_and_a_phone(
    site: Site, tagged: str, browser: Browser
) -> None:
    OUTPUT.mkdir(exist_ok=True)
    for name, viewport in (
        ("search-results.png", {"width": 1100, "height": 900}),
        ("search-results-phone.png", {"width": 390, "height": 844}),
    ):
        context = browser.new_context(viewport=viewport, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(site.url)
        type_search(page, "pioneer")
        expect(result_names(page)).not_to_have_count(0)
        page.wait_for_timeout(250)  # let the spinner fade
        page.screenshot(path=str(OUTPUT / name))
        # Nothing sticks out sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        context.close()
        assert (OUTPUT / name).stat().st_size > 10_000


def test_the_api_docs_render_with_nothing_from_another_host(site: Site, tab: Tab) -> None:
    page = tab.page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{site.url}/docs")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Contact Book")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/search").first).to_be_visible()
    assert requested and all(url.startswith(site.url + "/") for url in requested), requested


# --------------------------------------------------------------------------- new fields

FIELDS = """
UPDATE contacts SET phones = %(phones)s, title = %(title)s, company = %(company)s,
    location = %(location)s, tags = %(tags)s
WHERE first_name = %(first_name)s
"""


@pytest.fixture
def tagged(people: str) -> str:
    """The five people, three of them with phones, titles, companies and tags."""
    with psycopg.connect(people, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            FIELDS,
            [
                {
                    "first_name": "Ada",
                    "phones": ["+44 20 7946 0958", "020 7946 0000"],
                    "title": "Programmer",
                    "company": "Analytical Engines",
                    "location": "London, UK",
                    "tags": ["vip", "maths"],
                },
                {
                    "first_name": "Grace",
                    "phones": [],
                    "title": "Rear Admiral",
                    "company": None,
                    "location": None,
                    "tags": ["navy", "vip"],
                },
                {
                    "first_name": "Alan",
                    "phones": ["ask at the gate"],
                    "title": None,
                    "company": "Bletchley Park",
                    "location": None,
                    "tags": ["maths"],
                },
            ],
        )
    return people


def result(page: Page, name: str):
    return page.locator("#results .result").filter(has=page.locator(".result-name", has_text=name))


def test_results_show_the_phone_as_a_link_the_title_the_company_and_the_tags(
    site: Site, tagged: str, tab: Tab
) -> None:
    page = tab.page
    page.goto(site.url)
    type_search(page, "lovelace")
    ada = result(page, "Ada Lovelace")
    expect(ada.locator(".result-role")).to_have_text("Programmer at Analytical Engines")
    phone = ada.locator("a.result-phone")
    expect(phone).to_have_text("+44 20 7946 0958")  # the primary
    expect(phone).to_have_attribute("href", "tel:+442079460958")
    expect(ada.locator(".result-tags .chip")).to_have_text(["vip", "maths"])

    page.locator("#q").fill("")
    type_search(page, "turing")
    alan = result(page, "Alan Turing")
    expect(alan.locator(".result-role")).to_have_text("Bletchley Park")
    expect(alan.locator(".result-phone")).to_have_text("ask at the gate")
    assert alan.locator("a.result-phone").count() == 0  # no digits: nothing to dial

    page.locator("#q").fill("")
    type_search(page, "johnson")
    katherine = result(page, "Katherine Johnson")
    expect(katherine.locator(".result-email")).to_be_visible()
    assert katherine.locator(".result-role, .result-phone, .result-tags").count() == 0

    # The contact's page has every number, the location and the tags.
    page.locator("#q").fill("")
    type_search(page, "lovelace")
    ada.locator(".result-name").click()
    detail = page.locator("#detail")
    expect(detail.locator("a[href^='tel:']")).to_have_text(["+44 20 7946 0958", "020 7946 0000"])
    expect(detail).to_contain_text("London, UK")
    expect(detail).to_contain_text("Analytical Engines")
    expect(detail.locator(".chip")).to_have_text(["vip", "maths"])


def test_clicking_a_tag_filters_the_search_until_the_filter_is_removed(
    site: Site, tagged: str, tab: Tab
) -> None:
    page = tab.page
    searched: list[str] = []
    page.on("request", lambda request: searched.append(request.url))
    page.goto(site.url)
    type_search(page, "pioneer")
    everyone = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson"]
    expect(result_names(page)).to_have_text(everyone)
    filters = page.locator("#filters")
    expect(filters).to_be_hidden()

    result(page, "Ada Lovelace").get_by_role("button", name="vip").click()
    expect(filters).to_be_visible()
    expect(filters.locator(".chip-filter")).to_have_text(["vip×"])
    expect(result_names(page)).to_have_text(["Ada Lovelace", "Grace Hopper"])
    assert page.url.endswith("#/?q=pioneer&tag=vip")
    assert any("/api/v1/search?" in url and "tag=vip" in url for url in searched)

    # A second tag narrows further: every tag must be present.
    result(page, "Ada Lovelace").get_by_role("button", name="maths").click()
    expect(filters.locator(".chip-filter")).to_have_text(["vip×", "maths×"])
    expect(result_names(page)).to_have_text(["Ada Lovelace"])

    # Without text, the filters list every contact that has the tags.
    with page.expect_response(lambda r: "/api/v1/contacts?" in r.url and "tag=maths" in r.url):
        page.locator("#q").fill("")
    expect(result_names(page)).to_have_text(["Ada Lovelace"])
    expect(page.locator("#status")).to_have_text("1 contact found")

    page.get_by_role("button", name="Remove the tag filter “vip”").click()
    expect(filters.locator(".chip-filter")).to_have_text(["maths×"])
    expect(result_names(page)).to_have_text(["Ada Lovelace", "Alan Turing"])
    expect(page.get_by_role("button", name="Remove the tag filter “maths”")).to_be_focused()

    page.keyboard.press("Enter")  # the focused filter's button: removes it
    expect(filters).to_be_hidden()
    expect(page.locator("#idle")).to_be_visible()
    expect(page.locator("#q")).to_be_focused()


def test_a_tag_link_opened_directly_lists_the_tagged_contacts(
    site: Site, tagged: str, tab: Tab
) -> None:
    page = tab.page
    page.goto(f"{site.url}/#/?tag=navy")
    expect(result_names(page)).to_have_text(["Grace Hopper"])
    expect(page.locator("#filters .chip-filter")).to_have_text(["navy×"])
    expect(page.locator("#status")).to_have_text("1 contact found")

    # From a contact's page, a tag goes to every contact that has it.
    result_names(page).first.click()
    page.locator("#detail .chip", has_text="vip").click()
    expect(result_names(page)).to_have_text(["Ada Lovelace", "Grace Hopper"])
    expect(page.locator("#filters .chip-filter")).to_have_text(["vip×"])

    page.goto(f"{site.url}/#/?q=turing&tag=navy")
    state = page.locator("#state")
    expect(state).to_contain_text("Nothing matches “turing” among the contacts tagged “navy”")
    page.get_by_role("button", name="Search without the tag").click()
    expect(result_names(page)).to_have_text(["Alan Turing"])
    expect(page.locator("#filters")).to_be_hidden()
