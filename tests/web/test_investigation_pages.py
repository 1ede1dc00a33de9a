"""The investigation pages without a browser: the filter builder, explain, confirmations, roles."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from mailtrawl.accounts.models import Role
from mailtrawl.audit import service as audit_service
from mailtrawl.configurations import service as configurations_service
from mailtrawl.configurations.schemas import ConfigurationCreate
from mailtrawl.investigations.hits import store_hits
from mailtrawl.investigations.models import Investigation, InvestigationHit
from mailtrawl.remediation.models import RemediationAction, RemediationItem
from tests.web.conftest import add_user, sign_in

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
PHISH = "security@contoso-helpdesk.example"


def _configuration(client: TestClient, name: str = "contoso") -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions.begin() as session:
        configurations_service.create_configuration(
            session,
            box=ctx.box,
            data=ConfigurationCreate.model_validate(
                {
                    "name": name,
                    "tenant": "contoso.onmicrosoft.com",
                    "client_id": "00000000-0000-0000-0000-000000000001",
                    "credential": {"kind": "secret", "client_secret": "s3cret-value"},
                    "authorized_domains": ["contoso.com"],
                }
            ),
        )


def _investigation(
    client: TestClient, *, hits: int, junk: int = 0, status: str = "completed", name: str = "Phish"
) -> uuid.UUID:
    """An investigation with `hits` hits (the first `junk` of them in junkemail)."""
    sessions = client.app.state.ctx.sessions  # type: ignore[attr-defined]
    start = datetime(2025, 3, 1, tzinfo=UTC)
    with sessions.begin() as session:
        record = Investigation(
            name=name,
            configuration_name="contoso",
            query={"match": {"from": {"equals": PHISH}}},
            scope={"kind": "all", "values": []},
            status=status,
            mailboxes_total=hits,
            mailboxes_done=hits,
            hits=hits,
        )
        session.add(record)
        session.flush()
        store_hits(
            session,
            [
                dict(
                    investigation_id=record.id,
                    mailbox_id=f"id-{i:03d}",
                    mailbox_upn=f"user{i:03d}@contoso.com",
                    message_id=f"m-{i}",
                    folder="junkemail" if i < junk else "inbox",
                    internet_message_id=f"<campaign-{i % 2}@evil.example>",
                    subject=HOSTILE if i == 0 else f"Verify {i}",
                    sender_address=PHISH,
                    sender_name="Helpdesk",
                    recipients=f"user{i:03d}@contoso.com",
                    received=start + timedelta(hours=i),
                    attachment_names="",
                    has_attachments=False,
                    matched=[f'from equals "{PHISH}"'],
                    found_at=start,
                )
                for i in range(hits)
            ],
        )
        return record.id


def _hit_ids(client: TestClient, investigation_id: uuid.UUID) -> list[str]:
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        return [
            str(h)
            for h in session.scalars(
                select(InvestigationHit.id)
                .where(InvestigationHit.investigation_id == investigation_id)
                .order_by(InvestigationHit.mailbox_upn)
            )
        ]


def _analyst(client: TestClient) -> str:
    return sign_in(client, add_user(client, "al", Role.ANALYST))


def _form(csrf: str, **changes: str) -> dict[str, str]:
    fields = {
        "csrf_token": csrf,
        "name": "Helpdesk phish",
        "configuration": "contoso",
        "scope_kind": "",
        "scope_values": "",
        "received_after": "",
        "received_before": "",
        "attached_emails": "1",
        "groups-0-kind": "all",
        "rows-0-group": "0",
        "rows-0-field": "from",
        "rows-0-op": "",
        "rows-0-header": "",
        "rows-0-value": PHISH,
        "rows-1-group": "0",
        "rows-1-field": "subject",
        "rows-1-op": "",
        "rows-1-header": "",
        "rows-1-value": "",
        "query": "",
    }
    return fields | changes


def _errors_of_row(html: str, row: int) -> str:
    found = re.search(
        rf'<div class="filter-row invalid" data-row="{row}">(.*?)</div>\s*(?=<div class="filter-row|<fieldset|<div class="actions")',
        html,
        flags=re.S,
    )
    assert found, f"row {row} is not marked invalid"
    errors = re.search(
        r"<ul class=\"field-errors\"[^>]*data-row-errors>(.*?)</ul>", found.group(1), re.S
    )
    assert errors, f"row {row} shows no error"
    return errors.group(1)


def _operations(client: TestClient) -> list[str]:
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        return [e.operation for e in audit_service.list_entries(session, limit=200).items]


# The form -------------------------------------------------------------------------------------


def test_the_form_offers_the_fields_grouped_and_needs_no_inline_script(client: TestClient) -> None:
    _analyst(client)
    _configuration(client)
    form = client.get("/investigations/new")
    assert form.status_code == 200
    for label in ("Header", "Body", "Attachment"):
        assert f'<optgroup label="{label}">' in form.text
    assert 'data-ops="contains equals exists"' in form.text  # header
    assert 'name="groups-0-kind"' in form.text
    assert 'name="rows-0-field"' in form.text
    assert "/static/filters.js?v=" in form.text
    assert 'hx-post="/investigations/new/explain"' in form.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", form.text)
    assert " style=" not in form.text
    assert "Advanced: edit as JSON" in form.text


def test_validation_errors_are_shown_next_to_each_field(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    answer = client.post(
        "/investigations/new",
        data=_form(
            csrf,
            name="",
            **{
                "rows-0-value": "not an address",
                "rows-1-field": "body_regex",
                "rows-1-value": "(unclosed",
                "received_after": "2025-06-01",
                "received_before": "2025-05-01",
            },
        ),
    )
    assert answer.status_code == 422
    assert "The investigation was not started" in answer.text
    assert "is not an email address" in _errors_of_row(answer.text, 0)
    assert _errors_of_row(answer.text, 1)
    assert re.search(r'id="e-received"[^>]*>.*later than', answer.text, re.S)
    assert re.search(r'id="e-name"[^>]*>.*at least 1 character', answer.text, re.S)
    # What was typed comes back, escaped.
    assert 'value="not an address"' in answer.text
    assert 'value="(unclosed"' in answer.text
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(Investigation)).first() is None


def test_an_operator_the_field_does_not_take_is_named_on_its_row(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    answer = client.post("/investigations/new", data=_form(csrf, **{"rows-0-op": "contains"}))
    assert answer.status_code == 422
    assert "&#39;from&#39; takes equals, not &#39;contains&#39;" in _errors_of_row(answer.text, 0)


def test_explain_renders_the_plan_as_a_fragment(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    fields = _form(csrf, **{"rows-1-field": "body", "rows-1-value": "verify your mailbox"})
    fragment = client.post(
        "/investigations/new/explain", data=fields, headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<form id="new-investigation"')
    assert "<html" not in fragment.text
    assert "plan-result" in fragment.text
    assert f"from equals &#34;{PHISH}&#34;" in fragment.text or "from equals" in fragment.text
    assert re.search(r'data-plan="local".*body contains', fragment.text, re.S)
    assert 'data-plan="requests"' in fragment.text
    # Errors come back in the fragment too (200, so htmx swaps them in).
    bad = client.post(
        "/investigations/new/explain",
        data=_form(csrf, **{"rows-0-value": "nobody"}),
        headers={"HX-Request": "true"},
    )
    assert bad.status_code == 200
    assert "is not an email address" in _errors_of_row(bad.text, 0)
    assert "plan-result" not in bad.text
    # Without htmx, the whole page with the plan.
    page = client.post("/investigations/new/explain", data=fields)
    assert "<html" in page.text
    assert "plan-result" in page.text


def test_the_builder_adds_rows_and_groups_and_round_trips_json(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    grown = client.post("/investigations/new/builder?add=group", data=_form(csrf))
    assert grown.status_code == 200
    assert 'name="groups-1-kind"' in grown.text
    assert 'name="rows-3-group" value="1"' in grown.text
    more = client.post("/investigations/new/builder?add=row&to=0", data=_form(csrf))
    assert 'name="rows-2-field"' in more.text

    document = (
        '{"match": {"any": [{"from": {"equals": "a@evil.example"}},'
        ' {"all": [{"subject": {"contains": "invoice"}}, {"not": {"attachment_extension":'
        ' {"equals": ["html", "htm"]}}}]}]}, "received": {"after": "2025-05-01",'
        ' "before": "2025-05-31"}, "attached_emails": false}'
    )
    loaded = client.post("/investigations/new/builder?load=json", data=_form(csrf, query=document))
    assert loaded.status_code == 200
    text = loaded.text
    assert re.search(r'name="groups-0-kind".*?<option value="any" selected>', text, re.S)
    assert 'value="a@evil.example"' in text
    assert re.search(r'name="groups-1-kind".*?<option value="all" selected>', text, re.S)
    assert 'value="invoice"' in text
    assert 'value="html, htm"' in text
    assert re.search(r'name="rows-\d+-not" value="1" checked', text)
    assert 'name="received_after" value="2025-05-01"' in text
    assert 'name="received_before" value="2025-05-31"' in text
    assert not re.search(r'name="attached_emails" value="1" checked', text)

    # Deeper than the builder goes: the JSON stays, with a sentence saying so.
    deep = '{"match": {"not": {"any": [{"subject": "a"}, {"subject": "b"}]}}}'
    kept = client.post("/investigations/new/builder?load=json", data=_form(csrf, query=deep))
    assert "The builder cannot show this query; start it as JSON." in kept.text
    assert 'name="use_json" value="1" checked' in kept.text


def test_starting_from_the_builder_records_the_query_scope_and_audit(
    client: TestClient,
) -> None:
    csrf = _analyst(client)
    _configuration(client)
    fields = _form(
        csrf,
        scope_kind="users",
        scope_values="alice@contoso.com, bob@contoso.com",
        received_after="2025-05-01",
        received_before="2025-05-31",
        **{
            "groups-0-kind": "all",
            "groups-1-kind": "any",
            "rows-1-field": "header",
            "rows-1-op": "contains",
            "rows-1-header": "X-Mailer",
            "rows-1-value": "PHPMailer",
            "rows-2-group": "1",
            "rows-2-field": "attachment_extension",
            "rows-2-op": "",
            "rows-2-value": "html, htm",
            "rows-3-group": "1",
            "rows-3-field": "url_domain",
            "rows-3-value": "contoso-helpdesk.example",
            "rows-3-not": "1",
        },
    )
    answer = client.post("/investigations/new", data=fields)
    assert answer.status_code == 303, answer.text
    investigation_id = answer.headers["location"].rsplit("/", 1)[1]
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        record = session.get(Investigation, uuid.UUID(investigation_id))
        assert record is not None
        assert record.scope == {"kind": "users", "values": ["alice@contoso.com", "bob@contoso.com"]}
        assert record.query["match"] == {
            "all": [
                {"from": {"equals": PHISH}},
                {"header": {"name": "x-mailer", "contains": "PHPMailer"}},
                {
                    "any": [
                        {"attachment_extension": {"equals": ["html", "htm"]}},
                        {"not": {"url_domain": {"equals": "contoso-helpdesk.example"}}},
                    ]
                },
            ]
        }
        assert record.query["received"] == {
            "after": "2025-05-01T00:00:00Z",
            "before": "2025-06-01T00:00:00Z",
        }
        assert record.created_by == "al"
    assert "investigation.create" in _operations(client)

    # A scope kind without names is refused next to the scope field.
    refused = client.post("/investigations/new", data={**fields, "scope_values": ""})
    assert refused.status_code == 422
    assert re.search(r'id="e-scope"[^>]*>.*needs at least one value', refused.text, re.S)


def test_the_json_mode_starts_what_it_says(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    document = '{"match": {"any": [{"subject": "a"}, {"not": {"any": [{"subject": "b"}]}}]}}'
    answer = client.post("/investigations/new", data=_form(csrf, query=document, use_json="1"))
    assert answer.status_code == 303, answer.text
    broken = client.post(
        "/investigations/new",
        data=_form(csrf, query='{"match": {"form": "x@y.example"}}', use_json="1"),
    )
    assert broken.status_code == 422
    assert re.search(r'id="e-query"[^>]*>.*did you mean &#39;from&#39;', broken.text, re.S)


# Details, actions and confirmations -------------------------------------------------------------


def test_an_action_is_confirmed_with_its_exact_counts_first(client: TestClient) -> None:
    csrf = _analyst(client)
    investigation_id = _investigation(client, hits=5, junk=2)
    base = f"/investigations/{investigation_id}"
    details = client.get(base)
    assert details.text.count('name="hit"') == 5
    assert 'data-select-all="hit"' in details.text
    for action in ("warn", "junk", "trash", "delete", "purge"):
        assert f'data-action="{action}"' in details.text
    assert "Action state" in details.text

    everything = client.post(
        f"{base}/actions/preview", data={"csrf_token": csrf, "action": "junk", "target": "all"}
    )
    assert everything.status_code == 200
    assert re.search(r'data-count="messages">5<', everything.text)
    assert re.search(r'data-count="will_change">3<', everything.text)
    assert re.search(r'data-count="already_done">2<', everything.text)
    assert re.search(r'data-count="mailboxes">5<', everything.text)
    assert "junkemail: 2" in everything.text
    assert 'data-approval="none"' in everything.text
    assert 'name="target" value="all"' in everything.text
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(RemediationAction)).first() is None  # a dry run

    chosen = _hit_ids(client, investigation_id)[:3]
    preview = client.post(
        f"{base}/actions/preview",
        data={"csrf_token": csrf, "action": "delete", "target": "selected", "hit": chosen},
    )
    assert re.search(r'data-count="messages">3<', preview.text)
    assert "Confirm: delete (recoverable) 3 messages" in preview.text
    for hit in chosen:
        assert f'name="hit" value="{hit}"' in preview.text

    confirmed = client.post(
        f"{base}/actions", data={"csrf_token": csrf, "action": "delete", "hit": chosen}
    )
    assert confirmed.status_code == 303, confirmed.text
    location = confirmed.headers["location"]
    assert location.startswith(f"{base}?requested=")
    shown = client.get(location.split("#")[0])
    assert 'data-requested="queued"' in shown.text
    assert re.search(
        r'<tr data-remediation="[^"]+" data-kind="delete" data-status="queued">', shown.text
    )
    assert f'hx-get="{base}/actions"' in shown.text  # polls while it is queued
    assert "/export?format=csv" in shown.text
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        action = session.scalars(select(RemediationAction)).one()
        assert (action.kind, action.total, action.requested_by) == ("delete", 3, "al")
    assert "remediation.request" in _operations(client)

    # The copies under that action are left out of the next one, and the page says why.
    again = client.post(
        f"{base}/actions/preview", data={"csrf_token": csrf, "action": "trash", "target": "all"}
    )
    assert re.search(r'data-count="messages">2<', again.text)
    assert "3 another action on it is waiting or running" in again.text


def test_a_campaign_row_and_a_single_row_can_be_acted_on(client: TestClient) -> None:
    csrf = _analyst(client)
    investigation_id = _investigation(client, hits=4)
    base = f"/investigations/{investigation_id}"
    page = client.get(base)
    assert 'data-campaign="&lt;campaign-0@evil.example&gt;"' in page.text
    campaign = client.post(
        f"{base}/actions/preview",
        data={"csrf_token": csrf, "action": "warn", "campaign": "<campaign-0@evil.example>"},
    )
    assert re.search(r'data-count="messages">2<', campaign.text)
    one = _hit_ids(client, investigation_id)[0]
    single = client.post(
        f"{base}/actions/preview?only={one}",
        data={"csrf_token": csrf, "action": "trash", "hit": _hit_ids(client, investigation_id)},
    )
    assert re.search(r'data-count="messages">1<', single.text)


def test_an_action_above_the_threshold_waits_for_approval(client: TestClient) -> None:
    csrf = _analyst(client)
    investigation_id = _investigation(client, hits=2)
    base = f"/investigations/{investigation_id}"
    preview = client.post(
        f"{base}/actions/preview", data={"csrf_token": csrf, "action": "purge", "target": "all"}
    )
    assert 'data-approval="required"' in preview.text
    assert "every purge action needs a second administrator" in preview.text
    confirmed = client.post(
        f"{base}/actions",
        data={"csrf_token": csrf, "action": "purge", "target": "all", "note": "urgent"},
    )
    assert confirmed.status_code == 303
    shown = client.get(confirmed.headers["location"].split("#")[0])
    assert 'data-requested="awaiting_approval"' in shown.text
    assert "waiting for a second administrator" in shown.text


def test_an_empty_selection_or_unknown_action_is_refused_with_a_sentence(
    client: TestClient,
) -> None:
    csrf = _analyst(client)
    base = f"/investigations/{_investigation(client, hits=2)}"
    nothing = client.post(
        f"{base}/actions/preview",
        data={"csrf_token": csrf, "action": "delete", "target": "selected"},
    )
    assert nothing.status_code == 422
    assert "Select at least one found message" in nothing.text
    assert 'data-action="confirm"' not in nothing.text
    unknown = client.post(
        f"{base}/actions", data={"csrf_token": csrf, "action": "explode", "target": "all"}
    )
    assert unknown.status_code == 422
    bad_id = client.post(
        f"{base}/actions/preview", data={"csrf_token": csrf, "action": "junk", "hit": "x"}
    )
    assert bad_id.status_code == 400


def _complete(client: TestClient, action_id: str) -> None:
    """Mark an action executed, as the worker would have (the browser test runs the real one)."""
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        action = session.get(RemediationAction, uuid.UUID(action_id))
        assert action is not None
        items = session.scalars(
            select(RemediationItem).where(RemediationItem.action_id == action.id)
        ).all()
        for item in items:
            item.state = "verified"
            item.changed = True
            item.result_folder = "recoverableitemsdeletions"
        action.status = "completed"
        action.applied = action.verified = len(items)


def test_restore_is_confirmed_with_its_counts_too(client: TestClient) -> None:
    csrf = _analyst(client)
    investigation_id = _investigation(client, hits=3)
    base = f"/investigations/{investigation_id}"
    confirmed = client.post(
        f"{base}/actions", data={"csrf_token": csrf, "action": "delete", "target": "all"}
    )
    action_id = confirmed.headers["location"].split("requested=")[1].split("#")[0]
    page = client.get(base)
    assert f"{base}/actions/{action_id}/restore/preview" not in page.text  # not executed yet
    _complete(client, action_id)
    page = client.get(base)
    assert f"{base}/actions/{action_id}/restore/preview" in page.text
    assert f'hx-get="{base}/actions"' not in page.text  # nothing left to follow

    preview = client.post(f"{base}/actions/{action_id}/restore/preview", data={"csrf_token": csrf})
    assert preview.status_code == 200
    assert re.search(r'data-count="messages">3<', preview.text)
    assert "Where they go back to" in preview.text
    assert "inbox: 3" in preview.text
    restored = client.post(f"{base}/actions/{action_id}/restore", data={"csrf_token": csrf})
    assert restored.status_code == 303
    shown = client.get(restored.headers["location"].split("#")[0])
    assert re.search(r'data-kind="restore" data-status="queued"', shown.text)
    # Another investigation's page cannot reach this action.
    other = _investigation(client, hits=1)
    elsewhere = client.post(
        f"/investigations/{other}/actions/{action_id}/restore/preview", data={"csrf_token": csrf}
    )
    assert elsewhere.status_code == 404


def test_stop_and_duplicate(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    created = client.post("/investigations/new", data=_form(csrf))
    base = created.headers["location"]
    page = client.get(base)
    assert 'data-action="stop"' in page.text
    assert 'data-action="duplicate"' in page.text
    assert 'data-export="csv"' in page.text
    stopped = client.post(f"{base}/stop", data={"csrf_token": csrf})
    assert stopped.status_code == 303
    shown = client.get(stopped.headers["location"])
    assert "The investigation was asked to stop." in shown.text
    assert 'data-action="stop"' not in shown.text
    copy = client.post(f"{base}/duplicate", data={"csrf_token": csrf})
    assert copy.status_code == 303
    assert copy.headers["location"] != base
    assert "Helpdesk phish (copy)" in client.get(copy.headers["location"]).text
    operations = _operations(client)
    assert "investigation.stop" in operations
    assert "investigation.duplicate" in operations
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        entries = audit_service.list_entries(session, limit=200).items
    [stop] = [e for e in entries if e.operation == "investigation.stop"]
    # The status it had, not the one it was given: read before the stop.
    assert stop.before is not None
    assert stop.after is not None
    assert stop.before["status"] != stop.after["status"]
    assert stop.role == "analyst"


# CSRF, roles, escaping --------------------------------------------------------------------------


def test_every_post_needs_the_csrf_token(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    investigation_id = _investigation(client, hits=1)
    base = f"/investigations/{investigation_id}"
    for path, data in (
        ("/investigations/new", _form("")),
        ("/investigations/new/explain", _form("")),
        ("/investigations/new/builder?add=row", _form("")),
        (f"{base}/actions/preview", {"action": "junk", "target": "all"}),
        (f"{base}/actions", {"action": "junk", "target": "all"}),
        (f"{base}/stop", {}),
        (f"{base}/duplicate", {}),
    ):
        missing = client.post(path, data={k: v for k, v in data.items() if k != "csrf_token"})
        assert missing.status_code == 403, path
        wrong = client.post(path, data={**data, "csrf_token": "not-the-token"})
        assert wrong.status_code == 403, path
    # From another site, even with the token.
    cross = client.post(
        f"{base}/actions",
        data={"csrf_token": csrf, "action": "junk", "target": "all"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(RemediationAction)).first() is None


def test_a_viewer_gets_no_buttons_and_is_refused(client: TestClient, viewer: str) -> None:
    investigation_id = _investigation(client, hits=2)
    base = f"/investigations/{investigation_id}"
    page = client.get(base)
    assert page.status_code == 200
    assert 'method="post"' not in page.text.split('<main id="main"', 1)[1]
    assert 'name="hit"' not in page.text
    assert "data-action=" not in page.text
    assert 'data-export="csv"' in page.text  # reading is allowed
    refused: list[tuple[str, dict[str, Any]]] = [
        ("/investigations/new", _form(viewer)),
        ("/investigations/new/explain", _form(viewer)),
        (f"{base}/actions/preview", {"csrf_token": viewer, "action": "junk", "target": "all"}),
        (f"{base}/actions", {"csrf_token": viewer, "action": "junk", "target": "all"}),
        (f"{base}/stop", {"csrf_token": viewer}),
        (f"{base}/duplicate", {"csrf_token": viewer}),
        (f"{base}/actions/{uuid.uuid4()}/restore", {"csrf_token": viewer}),
    ]
    for path, data in refused:
        answer = client.post(path, data=data)
        assert answer.status_code == 403, path
        assert "needs the analyst role" in answer.text
    assert client.get("/investigations/new").status_code == 403


def test_hostile_values_are_escaped_on_every_investigation_page(client: TestClient) -> None:
    csrf = _analyst(client)
    _configuration(client)
    investigation_id = _investigation(client, hits=3, name=HOSTILE)
    base = f"/investigations/{investigation_id}"
    pages = [
        client.get(base).text,
        client.get(f"{base}/hits", headers={"HX-Request": "true"}).text,
        client.get(f"{base}/campaigns", headers={"HX-Request": "true"}).text,
        client.post(
            f"{base}/actions/preview", data={"csrf_token": csrf, "action": "junk", "target": "all"}
        ).text,
        client.post(
            "/investigations/new",
            data=_form(csrf, name=HOSTILE, **{"rows-0-value": HOSTILE}),
        ).text,
        client.post(
            "/investigations/new/builder?load=json",
            data=_form(csrf, query='{"match": {"subject": "' + HOSTILE.replace('"', '\\"') + '"}}'),
        ).text,
    ]
    for text in pages:
        assert "<script>window" not in text
        assert "<img src=x" not in text
        assert not re.search(r"<script(?![^>]*\bsrc=)", text)
        assert " style=" not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in pages[0]


def test_a_duration_and_an_action_make_it_active_with_a_badge_until_stopped(
    client: TestClient,
) -> None:
    csrf = _analyst(client)
    _configuration(client)
    form = client.get("/investigations/new").text
    assert '<select id="i-duration" name="duration"' in form
    assert 'value="continuous"' in form
    assert '<select id="i-action" name="action"' in form

    refused = client.post("/investigations/new", data=_form(csrf, action="junk"))
    assert refused.status_code == 422
    assert "an automatic action needs a duration" in refused.text
    bad = client.post(
        "/investigations/new", data=_form(csrf, duration="custom", duration_custom="soon")
    )
    assert bad.status_code == 422
    assert "&#39;soon&#39; is not a duration" in bad.text

    created = client.post(
        "/investigations/new", data=_form(csrf, duration="continuous", action="junk")
    )
    assert created.status_code == 303, created.text
    base = created.headers["location"]
    page = client.get(base).text
    assert '<span class="status watching" title="Active until stopped">continuous</span>' in page
    assert 'data-stat="new-hits">0<' in page
    listed = client.get("/investigations").text
    assert ">continuous</span>" in listed
    assert "then junk" in listed

    custom = client.post(
        "/investigations/new", data=_form(csrf, duration="custom", duration_custom="36h")
    )
    assert "active until" in client.get(custom.headers["location"]).text

    stopped = client.post(f"{base}/stop", data={"csrf_token": csrf})
    assert stopped.status_code == 303
    assert "watch ended" in client.get(stopped.headers["location"]).text
