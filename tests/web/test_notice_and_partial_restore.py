"""The confirmation page's per-action notice text and the partial restore, without a browser."""

from __future__ import annotations

import html
import re
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select

from mailtrawl.remediation.models import RemediationAction, RemediationItem
from mailtrawl.remediation.notice import DEFAULT_NOTICE_SUBJECT
from mailtrawl.settings_store import service as settings_store
from mailtrawl.storage.engine import write_session
from tests.web.test_investigation_pages import (
    HOSTILE,
    _analyst,
    _complete,
    _configuration,
    _hit_ids,
    _investigation,
)


def _notice_srcdoc(page: str) -> str:
    found = re.search(r'<iframe class="notice-preview" sandbox [^>]*srcdoc="([^"]*)"', page)
    assert found, "no notice preview"
    return html.unescape(found.group(1))


def test_the_notice_defaults_to_the_settings_and_is_previewed_escaped(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with write_session(ctx.sessions) as session:
        settings_store.update_settings(
            session,
            settings=ctx.settings,
            changes={"warning_notice_subject": "Careful: $subject", "organisation_name": "Contoso"},
            actor="ada",
        )
    investigation_id = _investigation(client, hits=2)
    base = f"/investigations/{investigation_id}"
    first = _hit_ids(client, investigation_id)[0]  # user000, whose subject is hostile
    page = client.post(
        f"{base}/actions/preview",
        data={"csrf_token": csrf, "action": "warn", "notify": "1", "hit": first},
    )
    assert page.status_code == 200, page.text
    assert 'name="notice_subject" value="Careful: $subject"' in page.text
    assert "Security warning: suspicious email in your mailbox</strong>" in html.unescape(
        page.text
    )  # the built-in body (no override)
    subject = re.search(r"data-notice-subject>([^<]*)<", page.text)
    assert subject is not None
    assert "Careful: " in subject.group(1)
    assert "<script>" not in page.text.split("<main", 1)[1].replace("&lt;script&gt;", "")
    document = _notice_srcdoc(page.text)
    assert "<script" not in document
    assert "<img" not in document
    assert "&lt;img src=x onerror=" in document  # the email's subject, listed as text
    assert "user000@contoso.com" in document
    assert "Contoso" in document


def test_an_edited_notice_is_validated_then_used_by_the_action(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    investigation_id = _investigation(client, hits=2)
    base = f"/investigations/{investigation_id}"
    fields = {"csrf_token": csrf, "action": "warn", "notify": "1", "target": "all"}

    broken = client.post(
        f"{base}/actions/preview",
        data=fields | {"notice_subject": "Hello $nobody", "notice_body": "<p>$mailbox</p>"},
    )
    assert broken.status_code == 422
    assert "data-notice-error" in broken.text
    assert "$nobody" in broken.text
    assert re.search(r'data-count="messages">2<', broken.text)  # the counts are still there
    assert 'value="Hello $nobody"' in broken.text  # kept as typed
    refused = client.post(
        f"{base}/actions",
        data=fields | {"notice_subject": "Hello $nobody", "notice_body": "<p>$mailbox</p>"},
    )
    assert refused.status_code == 422
    too_long = client.post(f"{base}/actions/preview", data=fields | {"notice_subject": "x" * 300})
    assert too_long.status_code == 422
    assert "longer than 255" in too_long.text

    body = "<p>Hi $mailbox, about <b>$subject</b> from $sender.</p>"
    hostile_hit = _hit_ids(client, investigation_id)[0]  # user000's subject is hostile
    shown = client.post(
        f"{base}/actions/preview",
        data={"csrf_token": csrf, "action": "warn", "notify": "1", "hit": hostile_hit}
        | {"notice_subject": "From the SOC: $count", "notice_body": body},
    )
    assert shown.status_code == 200
    document = _notice_srcdoc(shown.text)
    assert "Hi user000@contoso.com, about <b>" in document
    assert "&lt;script&gt;" in document  # the hostile subject, escaped
    assert "<script" not in document
    confirmed = client.post(
        f"{base}/actions",
        data=fields | {"notice_subject": "From the SOC: $count", "notice_body": body},
    )
    assert confirmed.status_code == 303, confirmed.text
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        action = session.scalars(select(RemediationAction)).one()
        assert action.options["notice"] == {"subject": "From the SOC: $count", "body": body}


def test_the_notice_fields_appear_only_for_warn_with_notify(client: TestClient) -> None:
    csrf = _analyst(client)
    investigation_id = _investigation(client, hits=1)
    base = f"/investigations/{investigation_id}"
    plain = client.post(
        f"{base}/actions/preview", data={"csrf_token": csrf, "action": "warn", "target": "all"}
    )
    assert 'name="notice_subject"' not in plain.text
    junk = client.post(
        f"{base}/actions/preview",
        data={"csrf_token": csrf, "action": "junk", "notify": "1", "target": "all"},
    )
    assert 'name="notice_subject"' not in junk.text
    warned = client.post(
        f"{base}/actions/preview",
        data={"csrf_token": csrf, "action": "warn", "notify": "1", "target": "all"},
    )
    assert f'value="{DEFAULT_NOTICE_SUBJECT}"' in warned.text


def _executed_delete(client: TestClient, csrf: str, investigation_id: uuid.UUID) -> str:
    base = f"/investigations/{investigation_id}"
    confirmed = client.post(
        f"{base}/actions", data={"csrf_token": csrf, "action": "delete", "target": "all"}
    )
    action_id = confirmed.headers["location"].split("requested=")[1].split("#")[0]
    _complete(client, action_id)
    return action_id


def test_a_restore_can_be_limited_to_chosen_mailboxes_with_exact_counts(
    client: TestClient,
) -> None:
    csrf = _analyst(client)
    investigation_id = _investigation(client, hits=4)
    base = f"/investigations/{investigation_id}"
    action_id = _executed_delete(client, csrf, investigation_id)
    restore = f"{base}/actions/{action_id}/restore"

    everything = client.post(f"{restore}/preview", data={"csrf_token": csrf})
    assert everything.status_code == 200
    assert re.search(r'data-count="messages">4<', everything.text)
    boxes = re.findall(
        r'name="mailbox" value="([^"]+)" checked data-restore-mailbox', everything.text
    )
    assert boxes == [f"user{i:03d}@contoso.com" for i in range(4)]
    assert 'name="restore_mailbox"' not in everything.text  # all of them

    chosen = ["user001@contoso.com", "USER003@contoso.com"]
    counted = client.post(
        f"{restore}/preview",
        data={"csrf_token": csrf, "choose_mailboxes": "1", "mailbox": chosen},
    )
    assert counted.status_code == 200
    assert re.search(r'data-count="messages">2<', counted.text)
    assert re.search(r'data-count="mailboxes">2<', counted.text)
    assert "Confirm: restore (undo delete) 2 messages" in counted.text
    assert re.findall(r'name="restore_mailbox" value="([^"]+)"', counted.text) == chosen
    ticked = re.findall(r'name="mailbox" value="([^"]+)" checked', counted.text)
    assert ticked == ["user001@contoso.com", "user003@contoso.com"]

    nothing = client.post(f"{restore}/preview", data={"csrf_token": csrf, "choose_mailboxes": "1"})
    assert nothing.status_code == 422
    assert "Tick at least one mailbox" in nothing.text
    assert 'data-action="confirm"' not in nothing.text

    done = client.post(restore, data={"csrf_token": csrf, "restore_mailbox": chosen})
    assert done.status_code == 303, done.text
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        undo = session.scalars(
            select(RemediationAction).where(RemediationAction.kind == "restore")
        ).one()
        upns = sorted(
            session.scalars(
                select(RemediationItem.mailbox_upn).where(RemediationItem.action_id == undo.id)
            )
        )
    assert upns == ["user001@contoso.com", "user003@contoso.com"]
    # The rest can still be restored afterwards.
    rest = client.post(f"{restore}/preview", data={"csrf_token": csrf})
    assert "2 a restore of it is already waiting or running" in rest.text


def test_hostile_mailbox_names_in_the_restore_list_are_escaped(client: TestClient) -> None:
    csrf = _analyst(client)
    investigation_id = _investigation(client, hits=1)
    action_id = _executed_delete(client, csrf, investigation_id)
    page = client.post(
        f"/investigations/{investigation_id}/actions/{action_id}/restore/preview",
        data={"csrf_token": csrf},
    )
    assert HOSTILE not in page.text
