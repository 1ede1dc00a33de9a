"""Cases: intake and dedup, stored raw, analysis, verdicts and notifications, the automatic
investigation, clustering, threat-intel lists, YARA, and the attachment archive."""

from __future__ import annotations

import hashlib
import io
import uuid

import pytest
import pyzipper
from sqlalchemy import func, select, text

from mailtrawl.analysis.errors import ReportTooLarge
from mailtrawl.analysis.parsing import MAX_REPORT_BYTES
from mailtrawl.audit import service as audit
from mailtrawl.investigations.models import Investigation
from mailtrawl.reports import service
from mailtrawl.reports.intake import open_raw
from mailtrawl.reports.models import CaseVerdict, ReportCase
from mailtrawl.reports.schemas import CaseUpdate, ClusterAction
from mailtrawl.storage.engine import write_session
from tests.analysis.builders import message
from tests.analysis.msgbuild import build_msg
from tests.reports.conftest import (
    ATTACKER,
    PE_HEAD,
    Reports,
    inline_forward,
    phish,
    wrapped,
)


def test_one_message_reported_twice_is_one_case_with_two_reporters(any_reports: Reports) -> None:
    original = phish()
    first = any_reports.submit(wrapped(original, reporter="Alice <alice@contoso.com>"))
    second = any_reports.submit(wrapped(original, reporter="Bob <bob@contoso.com>"))
    again = any_reports.submit(wrapped(original, reporter="alice@contoso.com"))
    assert first.created
    assert not second.created
    assert not again.created
    assert first.case.id == second.case.id == again.case.id
    view = any_reports.case(first.case.id)
    assert [(r.address, r.report_count, r.claimed) for r in view.reporters] == [
        ("alice@contoso.com", 2, False),
        ("bob@contoso.com", 1, False),
    ]
    assert view.reporter_count == 2
    assert [e.kind for e in view.timeline].count("reported") == 3
    assert view.sender == ATTACKER
    assert view.fidelity == "original"
    # Analysed once, whoever reported it.
    assert any_reports.run_jobs() >= 1
    assert any_reports.case(first.case.id).verdict in ("phishing", "malicious")


def test_the_stored_message_is_compressed_and_encrypted(reports: Reports) -> None:
    original = phish(subject="Quarterly bonus statement")
    result = reports.submit(wrapped(original, reporter="alice@contoso.com"))
    with reports.sessions() as session:
        stored = session.execute(
            text("SELECT raw FROM report_cases WHERE id = :id"), {"id": result.case.id.hex}
        ).scalar_one()
        assert b"Quarterly bonus" not in stored
        assert b"invoice-portal" not in stored
        case = session.get(ReportCase, result.case.id)
        assert case is not None
        assert b"Quarterly bonus statement" in open_raw(reports.box, case.raw)
        assert "Quarterly" not in repr(case)


def test_a_message_over_50_mb_is_refused(reports: Reports) -> None:
    with pytest.raises(ReportTooLarge, match="52428800 allowed"):
        reports.submit(b"x" * (MAX_REPORT_BYTES + 1))


def test_an_outlook_msg_upload_becomes_a_case(reports: Reports) -> None:
    raw = build_msg(
        subject="Your parcel is waiting",
        sender="delivery@dhl-parcels.example",
        to="carol@contoso.com",
        body="Pay the customs fee at https://dhl-parcels.example/pay",
        headers="Message-ID: <parcel-1@dhl-parcels.example>\r\n"
        "From: delivery@dhl-parcels.example\r\nSubject: Your parcel is waiting\r\n",
    )
    result = reports.submit(raw, filename="parcel.msg", reporter="carol@contoso.com")
    assert result.created
    reports.run_jobs()
    view = reports.case(result.case.id)
    assert view.subject == "Your parcel is waiting"
    assert view.reporters[0].address == "carol@contoso.com"
    assert view.verdict is not None
    assert "https://dhl-parcels.example/pay" in view.iocs["urls"]


def test_a_plain_forward_is_analysed_with_lower_fidelity(reports: Reports) -> None:
    result = reports.submit(inline_forward("Mailbox suspended", reporter="dave@contoso.com"))
    assert result.fidelity == "forward"
    assert result.reporter == "dave@contoso.com"
    reports.run_jobs()
    view = reports.case(result.case.id)
    assert view.fidelity == "forward"
    assert view.analysis is not None
    assert view.analysis["fidelity"] == "forward"


def test_an_analyst_verdict_is_audited_kept_and_tells_the_reporters_again(
    reports: Reports,
) -> None:
    reports.configure(auto_investigation={"enabled": False})
    result = reports.submit(wrapped(phish(), reporter="Alice <alice@contoso.com>"))
    reports.run_jobs()
    first = reports.case(result.case.id)
    assert first.verdict in ("phishing", "malicious")
    told = [m for m in reports.inbox("alice@contoso.com") if "Your report" in m["subject"]]
    assert len(told) == 1  # the engines' verdict
    with write_session(reports.sessions) as session:
        case = service.get_case(session, ref=result.case.id)
        change = service.set_verdict(
            session,
            case=case,
            verdict="simulation",
            actor="ana",
            message="It was our own awareness drill.",
        )
        audit.record(
            session,
            actor="ana",
            operation="report.verdict",
            entity_type="report_case",
            entity_id=str(case.id),
            before=change.before,
            after=change.after,
        )
    reports.run_jobs()
    view = reports.case(result.case.id)
    assert (view.verdict, view.verdict_source) == ("simulation", "analyst")
    inbox = [m for m in reports.inbox("alice@contoso.com") if "Your report" in m["subject"]]
    assert len(inbox) == 2
    assert any("Phishing simulation" in m["subject"] for m in inbox)
    assert [e.kind for e in view.timeline].count("notified") == 2
    assert view.reporters[0].notified_verdict == "simulation"
    # A re-analysis does not overturn the analyst.
    with write_session(reports.sessions) as session:
        service.reanalyse(session, case=service.get_case(session, ref=result.case.id), actor="ana")
    reports.run_jobs()
    assert reports.case(result.case.id).verdict == "simulation"
    with reports.sessions() as session:
        operations = [e.operation for e in audit.list_entries(session, limit=100).items]
    assert "report.verdict" in operations
    assert "report.notify" in operations


def test_phishing_starts_one_investigation_shared_by_identical_reports(reports: Reports) -> None:
    original = phish(attachment=PE_HEAD)
    first = reports.submit(wrapped(original, reporter="alice@contoso.com"))
    reports.run_jobs()
    view = reports.case(first.case.id)
    assert view.verdict == "malicious"
    assert len(view.investigation_ids) == 1
    with reports.sessions() as session:
        investigation = session.get(Investigation, uuid.UUID(view.investigation_ids[0]))
        assert investigation is not None
        query = investigation.query
    alternatives = query["match"]["any"]
    fields = [next(iter(a)) for a in alternatives]
    assert fields == [
        "from",
        "subject",
        "url",
        "url_domain",
        "attachment_hash",
        "internet_message_id",
    ]
    assert alternatives[0]["from"]["equals"] == ATTACKER
    assert alternatives[1]["subject"]["equals"] == "Invoice 4471 overdue"
    assert "login-micros0ft.example" in str(alternatives[3])
    assert len(view.iocs["attachments"][0]["sha256"]) == 64
    assert view.iocs["attachments"][0]["sha256"] in str(alternatives[4])
    assert "after" in query["received"]
    # The same email reported again: the same case and the same investigation.
    second = reports.submit(wrapped(original, reporter="bob@contoso.com"))
    reports.run_jobs()
    assert second.case.id == first.case.id
    # A cluster-mate (same campaign, another copy) links to it instead of starting another.
    mate = reports.submit(
        wrapped(
            phish(attachment=PE_HEAD, subject="RE: Invoice 5120 overdue"),
            reporter="erin@contoso.com",
        )
    )
    reports.run_jobs()
    mate_view = reports.case(mate.case.id)
    assert mate_view.cluster_id == reports.case(first.case.id).cluster_id is not None
    assert mate_view.investigation_ids == view.investigation_ids
    with reports.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Investigation)) == 1
        operations = [e.operation for e in audit.list_entries(session, limit=100).items]
    assert "report.auto_investigation" in operations


def _plain(subject: str, sender: str, body: str) -> bytes:
    """A message without links or attachments: only its sender, subject and body can match."""
    return message(
        sender=sender,
        subject=subject,
        text=body,
        headers={"Message-ID": f"<{uuid.uuid4().hex}@example.net>"},
    )


def test_cases_of_one_campaign_are_clustered_and_acted_on_together(reports: Reports) -> None:
    reports.configure(auto_investigation={"enabled": False}, notifications={"enabled": False})
    body = (
        "Dear customer, we could not deliver your parcel because the address label was "
        "damaged in transit. Please confirm your delivery address and pay the redelivery fee "
        "within 48 hours or the parcel returns to the sender. Reference {n}."
    )
    same_subject = [
        reports.submit(
            _plain(f"Parcel {n} held at depot", "Courier <a@courier.example>", f"Reference {n}.")
        )
        for n in (101, 202)
    ]
    similar_body = reports.submit(
        _plain("Delivery notice", "Courier <notice@courier-two.example>", body.format(n=303))
    )
    similar_too = reports.submit(
        _plain("RE: Parcel 101 held at depot", "Courier <x@courier.example>", body.format(n=404))
    )
    unrelated = reports.submit(
        _plain(
            "Team lunch on Friday",
            "Dave <dave@partner.example>",
            "Shall we meet at noon in the usual place near the station for the lunch? "
            "The new menu has a few vegetarian dishes and the terrace is open again.",
        )
    )
    same_subject.append(similar_too)
    reports.run_jobs()
    clusters = {
        r.case.id: reports.case(r.case.id).cluster_id for r in (*same_subject, similar_body)
    }
    assert len(set(clusters.values())) == 1
    assert None not in clusters.values()
    assert reports.case(unrelated.case.id).cluster_id != next(iter(clusters.values()))
    cluster_id = next(iter(clusters.values()))
    with write_session(reports.sessions) as session:
        cluster = service.get_cluster(session, ref=cluster_id)
        assert cluster.case_count == 4
        service.apply_to_cluster(
            session,
            cluster=cluster,
            data=ClusterAction(verdict="phishing", status="closed", add_tags=["parcel-wave"]),
            actor="ana",
        )
    for case_id in clusters:
        view = reports.case(case_id)
        assert (view.verdict, view.status, view.tags) == ("phishing", "closed", ["parcel-wave"])
    assert reports.case(unrelated.case.id).tags == []


def test_an_imported_intel_list_makes_a_matching_report_malicious(reports: Reports) -> None:
    reports.configure(auto_investigation={"enabled": False}, notifications={"enabled": False})
    payload = b"%PDF-1.4 harmless looking statement " + bytes(range(200))
    clean = phish(
        subject="Statement",
        sender="Accounts <accounts@partner.example>",
        body="Please find the statement attached for your records and files this month.",
        attachment=None,
    )
    digest = hashlib.sha256(payload).hexdigest()
    before = reports.submit(clean)
    with write_session(reports.sessions) as session:
        service.import_intel_list(
            session,
            data=f"type,value,description\nsha256,{digest},Dropper of the week\n".encode(),
            name="feed.csv",
            actor="tests",
        )
    listed = message(
        sender="Accounts <accounts@partner.example>",
        subject="Statement attached",
        text="Please find the statement attached.",
        headers={"Message-ID": "<stmt-1@partner.example>"},
        attachments=(("statement.pdf", "application/pdf", payload),),
    )
    after = reports.submit(listed, reporter="grace@contoso.com")
    reports.run_jobs()
    view = reports.case(after.case.id)
    assert view.verdict == CaseVerdict.MALICIOUS.value
    assert any(i["kind"] == "intel.hash" for i in view.analysis["indicators"])  # type: ignore[index]
    assert reports.case(before.case.id).verdict != "malicious"


def test_a_yara_rule_set_is_used_by_the_analysis(reports: Reports) -> None:
    reports.configure(auto_investigation={"enabled": False}, notifications={"enabled": False})
    with write_session(reports.sessions) as session:
        service.save_yara_rules(
            session,
            name="house",
            source='rule Suspended { meta: verdict = "phishing" score = 80 '
            'strings: $a = "mailbox will be suspended" nocase condition: $a }',
            actor="tests",
        )
    result = reports.submit(phish())
    reports.run_jobs()
    indicators = reports.case(result.case.id).analysis["indicators"]  # type: ignore[index]
    assert any(i["kind"] == "yara.match" and "Suspended" in i["value"] for i in indicators)


def test_the_attachment_archive_is_an_aes_zip_with_the_password_infected(reports: Reports) -> None:
    reports.configure(auto_investigation={"enabled": False}, notifications={"enabled": False})
    result = reports.submit(phish(attachment=PE_HEAD))
    reports.run_jobs()
    view = reports.case(result.case.id)
    sha = view.iocs["attachments"][0]["sha256"]
    with reports.sessions() as session:
        case = service.get_case(session, ref=result.case.id)
        data = service.attachment_archive(case, sha, box=reports.box)
        with pytest.raises(service.ReportsNotFound):
            service.attachment_archive(case, "0" * 64, box=reports.box)
    with pyzipper.AESZipFile(io.BytesIO(data)) as archive:
        (info,) = archive.infolist()
        assert info.filename == "statement.pdf.exe"
        with pytest.raises(RuntimeError):
            archive.read(info.filename)  # no password, no content
        archive.setpassword(b"infected")
        assert archive.read(info.filename) == PE_HEAD


def test_the_queue_filters_by_tag_in_the_database_with_exact_totals(
    any_reports: Reports,
) -> None:
    r = any_reports
    r.configure(auto_investigation={"enabled": False}, notifications={"enabled": False})
    ids = [
        r.submit(wrapped(phish(subject=f"Parcel held {i}"), reporter="alice@contoso.com")).case.id
        for i in range(4)
    ]
    tags = [["wave"], ["wave", "vip"], ["wave-2"], []]
    with write_session(r.sessions) as session:
        for case_id, wanted in zip(ids, tags, strict=True):
            case = service.get_case(session, ref=case_id)
            service.update_case(session, case=case, data=CaseUpdate(tags=wanted), actor="ana")
    with r.sessions() as session:
        page = service.list_cases(
            session, filters=service.CaseFilters(tag="wave"), sort="subject", limit=1
        )
        rest = service.list_cases(
            session, filters=service.CaseFilters(tag="wave"), sort="subject", limit=1, offset=1
        )
        vip = service.list_cases(session, filters=service.CaseFilters(tag="vip"))
        none = service.list_cases(session, filters=service.CaseFilters(tag="wav"))
    assert (page.total, rest.total) == (2, 2)
    assert [page.items[0].id, rest.items[0].id] == ids[:2]
    assert [c.id for c in vip.items] == [ids[1]]
    assert (none.total, none.items) == (0, [])
