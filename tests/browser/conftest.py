"""Playwright for Python driving Debian's chromium against a live test server.

Never downloads a browser: the executable is /usr/bin/chromium. Without it
the browser tests skip, unless WHALEFALL_REQUIRE_LIVE=1 (CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.conftest import role_groups  # noqa: F401  (autouse)
from tests.cluster.conftest import qcluster  # noqa: F401  (a real django-q2 worker for the browser tests)

ROOT = Path(__file__).resolve().parents[2]
# Screenshots go under var/ (untracked) so a test run leaves the checkout clean;
# WHALEFALL_SCREENSHOTS=docs/screenshots refreshes the ones the README shows.
SCREENSHOTS = ROOT / os.environ.get("WHALEFALL_SCREENSHOTS", "var/screenshots")
# the session's one chromium is ``browser`` in tests/conftest.py: browser tests live in several folders,
# and a second sync_playwright() started while the first runs fails ("inside the asyncio loop")


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def admin_login(live_server, page, django_user_model):
    """Log in through the real login form; returns a function(username) -> page."""

    def login(username: str = "alice", password: str = "alice-Pa55-word") -> object:
        if not django_user_model.objects.filter(username=username).exists():
            django_user_model.objects.create_superuser(username, f"{username}@example.com", password)
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        return page

    return login


# What is wider than its box on the page: the document itself, the container of any visible table, any
# table cell whose content is wider than the cell (cut off, or spilling over its neighbour), and the first
# element of #content whose right edge is past the window (issue #22 part 4: nothing clipped at 1366 px).
OVERFLOW_JS = """() => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth) out.push(`page: ${doc.scrollWidth} > ${doc.clientWidth}`);
  const name = (el) => el.id ? '#' + el.id : (el.className && typeof el.className === 'string'
    ? '.' + el.className.trim().split(/\\s+/).join('.') : el.tagName.toLowerCase());
  for (const table of document.querySelectorAll('table')) {
    if (!table.offsetParent) continue;  // hidden (a collapsed detail, a closed filter)
    const box = table.parentElement;
    if (box.scrollWidth > box.clientWidth + 1) {
      out.push(`table ${name(table)} in ${name(box)}: ${box.scrollWidth} > ${box.clientWidth}`);
    }
    for (const cell of table.querySelectorAll('td, th')) {
      if (cell.scrollWidth > cell.clientWidth + 1) {
        const text = cell.textContent.trim().slice(0, 60);
        out.push(`cell in ${name(table)}: ${cell.scrollWidth} > ${cell.clientWidth}: ${text}`);
      }
    }
  }
  for (const el of document.querySelectorAll('#content *')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > doc.clientWidth + 1) {
      out.push(`off the page: ${name(el)} right=${Math.round(r.right)}: ${el.textContent.trim().slice(0, 40)}`);
      break;
    }
  }
  return out;
}"""


def overflow(page) -> list[str]:
    """What on the current page is wider than its box (empty when nothing is clipped or scrolls sideways)."""
    return page.evaluate(OVERFLOW_JS)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
