"""The demo page in a real browser: an admin edit shows up on an open profile page."""

from __future__ import annotations

import time

from tests.browser import browser
from tests.live import ADMIN_PASSWORD, ADMIN_USER


def log_into_admin(page, base_url):
    page.goto(base_url + "/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(base_url + "/admin/")


def test_an_admin_edit_updates_the_open_profile_page_within_two_seconds(demo_server, admin):
    from playwright.sync_api import expect

    pk = admin.add_dog("Biscuit", "Dachshund", 2)
    with browser() as chromium:
        visitor = chromium.new_context().new_page()
        visitor.goto(f"{demo_server.url}/dogs/{pk}/")
        expect(visitor.locator("#dog-name")).to_have_text("Biscuit")
        expect(visitor.locator("#badge")).to_have_text("live", timeout=5000)
        expect(visitor.locator("#status-text")).to_contain_text("connection active", timeout=5000)

        editor = chromium.new_context().new_page()
        log_into_admin(editor, demo_server.url)
        editor.goto(f"{demo_server.url}/admin/dogs/dog/{pk}/change/")
        editor.fill("#id_name", "Sir Biscuit")
        editor.fill("#id_age", "3")
        editor.click("input[name=_save]")
        saved = time.monotonic()
        expect(visitor.locator("#dog-name")).to_have_text("Sir Biscuit", timeout=2000)
        expect(visitor.locator("#dog-age")).to_have_text("3", timeout=2000)
        assert time.monotonic() - saved < 2.0
        editor.wait_for_url(f"{demo_server.url}/admin/dogs/dog/")


def test_two_pages_on_one_dog_share_notes_show_the_pulse_and_follow_admin_edits(demo_server, admin):
    from playwright.sync_api import expect

    pk = admin.add_dog("Pepper", "Poodle", 4)
    with browser() as chromium:
        first = chromium.new_context().new_page()
        second = chromium.new_context().new_page()
        for page in (first, second):
            page.goto(f"{demo_server.url}/dogs/{pk}/")
            expect(page.locator("#badge")).to_have_text("live", timeout=5000)
            expect(page.locator("#status-text")).to_contain_text("connection active", timeout=5000)

        first.fill("#note-input", "good with kids")
        first.click("#note-form button")
        sent = time.monotonic()
        for page in (first, second):
            expect(page.locator("#notes li")).to_have_text(["good with kids"], timeout=2000)
        assert time.monotonic() - sent < 2.0

        second.fill("#note-input", "<b>not bold</b>")
        second.press("#note-input", "Enter")
        expect(first.locator("#notes li").nth(1)).to_have_text("<b>not bold</b>", timeout=2000)
        assert first.locator("#notes b").count() == 0, "notes are shown as text, never as HTML"

        admin.change_dog(pk, "Pepper Pot", "Poodle", 5)
        for page in (first, second):
            expect(page.locator("#dog-name")).to_have_text("Pepper Pot", timeout=2000)
            expect(page.locator("#dog-age")).to_have_text("5", timeout=2000)
