"""Search-as-you-type for the target users, in a real browser with htmx and the emulator."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from mailtrawl.emulator.testing import EmulatorProcess
from tests.e2e.conftest import Server, Watched, sign_in

RUN = "window.__pwned=1;document.title='pwned'"


def test_typing_finds_users_and_the_keyboard_adds_them(
    page: Any, server: Server, emulator: EmulatorProcess, watched: Watched
) -> None:
    tag = uuid.uuid4().hex[:6]
    hostile = f'<img src=x onerror="{RUN}"> Mallory {tag}'
    emulator.control(
        "POST",
        "/users",
        {"userPrincipalName": f"mallory-{tag}@contoso.com", "displayName": hostile},
    )
    sign_in(page, "al", path="/investigations/new")
    page.get_by_label("Target users").select_option("users")
    search = page.get_by_label("Find in the directory")
    search.fill("ali")
    first = page.locator("#directory-results [data-add-scope]").first
    expect(first).to_have_attribute("data-add-scope", "alice@contoso.com")
    expect(first).to_contain_text("Alice Archer")
    # Enter in the box goes to the results (never starts the investigation); Enter adds.
    search.press("Enter")
    expect(first).to_be_focused()
    page.keyboard.press("Enter")
    scope = page.locator("#i-scope-values")
    expect(scope).to_have_value("alice@contoso.com")

    # A second user, by principal name, with the arrow keys; the first stays.
    search.fill("")
    search.type("b")
    expect(page.locator("#directory-results [data-add-scope]").first).to_have_attribute(
        "data-add-scope", "bob@contoso.com"
    )
    search.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(scope).to_have_value("alice@contoso.com, bob@contoso.com")
    assert re.search(r"/investigations/new$", page.url)

    # A display name with markup is shown as text and runs nothing.
    search.fill("<img")
    result = page.locator("#directory-results [data-add-scope]").first
    expect(result).to_have_attribute("data-add-scope", f"mallory-{tag}@contoso.com")
    expect(result).to_contain_text(hostile)
    assert page.locator("#directory-results img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.title() != "pwned"

    # Groups use the same box.
    page.get_by_label("Target users").select_option("groups")
    search.fill("fin")
    group = page.locator("#directory-results [data-add-scope]").first
    expect(group).to_contain_text("Finance Team")
    assert watched.dialogs == []
    assert watched.errors == []
    assert watched.csp_violations() == []
