"""The connection test for Microsoft 365: ordered checks, each with a sentence that fixes it.

1. token            sign in with the client secret or certificate (AADSTS codes explained)
2. permissions      the four application permissions are in the token (admin consent)
3. directory        list users and groups
4. test-mailbox     read the test mailbox
5. category         create or update the warning category in it (MailboxSettings.ReadWrite)
6. test-item        create a draft in it and remove it again, leaving nothing (Mail.ReadWrite)
7. reach            how many sampled mailboxes the app can open (application access policies)

A failing step never raises: it is reported, and steps that cannot run are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mailtrawl.core import MailboxRef, NewMessage
from mailtrawl.errors import (
    AuthFailed,
    MailboxUnavailable,
    NotFound,
    PermissionMissing,
    ProviderError,
    Throttled,
)
from mailtrawl.providers.base import CategoryChange, CheckReport, CheckResult, CheckStatus
from mailtrawl.providers.errors import (
    AccessPolicyBlocked,
    MailboxNotAuthorized,
    TokenRequestFailed,
)
from mailtrawl.providers.graph.auth import ClientCertificate, ClientSecret
from mailtrawl.providers.graph.client import segment
from mailtrawl.providers.graph.provider import (
    DIRECTORY_ROLE,
    MAIL_ROLE,
    REQUIRED_ROLES,
    USERS_ROLE,
    GraphProvider,
)

CONSENT_DELAY = (
    " Microsoft can take a few minutes to apply a new admin consent: if you granted it just "
    "now, wait five minutes and test again."
)
THROTTLED = (
    "Microsoft 365 kept throttling the test (HTTP 429/503) even after retrying. This is not a "
    "configuration error: wait a few minutes and test again."
)
TEST_SUBJECT = "mailtrawl connection test (safe to delete)"
# The connection test should answer in seconds, not wait out long throttling.
CHECK_RETRY_BUDGET = 30.0

TITLES = {
    "token": "Sign in to Microsoft Entra ID",
    "permissions": "Application permissions granted",
    "directory": "List users and groups",
    "test-mailbox": "Read the test mailbox",
    "category": "Create the warning category",
    "test-item": "Create and remove a test item",
    "reach": "Mailboxes the app can reach",
}


class _Failed(Exception):
    """A check's verdict when it is not ok (raised inside a step, caught by the runner)."""

    def __init__(
        self,
        status: CheckStatus,
        message: str,
        fix: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fix = fix
        self.details = details or {}


def _date(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d") if value else ""


def token_failure(error: AuthFailed, provider: GraphProvider) -> tuple[str, str | None]:
    """(what happened, how to fix it) for a failed sign-in, by AADSTS code."""
    settings = provider.settings
    code = error.aadsts
    app = f"client id {settings.client_id}"
    portal = "In the Entra admin center, open App registrations → your app"
    credential = settings.credential
    if code == 7000215:
        return (
            "The client secret is wrong: the value pasted is not the client secret's Value.",
            f"{portal} → Certificates & secrets and copy the Value column, not the Secret ID. "
            "The Value is shown only right after the secret is created; if it is hidden, create "
            "a new client secret and paste its Value.",
        )
    if code == 7000222:
        expired = (
            f" on {_date(credential.expires_at)}"
            if isinstance(credential, ClientSecret) and credential.expires_at
            else ""
        )
        return (
            f"The client secret expired{expired}.",
            f"{portal} → Certificates & secrets, create a new client secret, and paste its Value "
            "into this configuration.",
        )
    if code == 700016:
        return (
            f"Entra ID has no application with {app} in tenant {settings.tenant}: the client id "
            "is wrong, or the app is registered in another tenant.",
            "Copy the Application (client) ID and the Directory (tenant) ID from the app's "
            "Overview page into this configuration.",
        )
    if code == 90002:
        return (
            f"Tenant '{settings.tenant}' was not found at {settings.cloud.authority_host}.",
            "Use the Directory (tenant) ID from the app's Overview page (a GUID) or a verified "
            "domain of the tenant, and check the cloud: GCC High, DoD and China tenants are not "
            "found in the global cloud.",
        )
    if code == 900023:
        return (
            f"'{settings.tenant}' is neither a tenant id nor a domain name.",
            "Use the Directory (tenant) ID from the app's Overview page (a GUID).",
        )
    if code == 7000218:
        return (
            "No credential was sent: the configuration has neither a client secret nor a "
            "certificate.",
            "Add a client secret or a certificate to this configuration.",
        )
    if code == 700027:
        thumb = (
            f" (thumbprint {credential.thumbprint})"
            if isinstance(credential, ClientCertificate)
            else ""
        )
        return (
            f"Entra ID did not accept the certificate{thumb}: it is not uploaded to the app, or "
            "the private key does not belong to the uploaded certificate.",
            f"{portal} → Certificates & secrets → Certificates and upload this certificate "
            "(the public .cer/.pem part), or give mailtrawl the key of the certificate that is "
            "uploaded there.",
        )
    if code == 700024:
        return (
            "Entra ID says the signed request is outside its valid time range: this server's "
            "clock is probably wrong.",
            "Synchronise the clock of the server running mailtrawl (NTP) and test again.",
        )
    if code == 50012:
        return (
            "Entra ID rejected the signed request for the wrong audience: the cloud or the "
            "sign-in host does not match the tenant.",
            "Check the cloud setting (global, GCC High, DoD, China or custom endpoints).",
        )
    text = error.description if isinstance(error, TokenRequestFailed) else None
    return (
        f"Microsoft Entra ID refused the sign-in: {text or str(error)}",
        "Look up the AADSTS code in Microsoft's error reference, fix the configuration, and "
        "test again."
        if code
        else None,
    )


def _permission_fix(roles: list[str]) -> str:
    names = ", ".join(roles)
    return (
        "In the Entra admin center, open App registrations → your app → API permissions, add "
        f"the Microsoft Graph application permissions {names} (type Application, not "
        "Delegated), then click 'Grant admin consent'."
    )


def _explain(error: ProviderError, mailbox: str | None = None) -> _Failed:
    """A failed check for an error a step did not handle itself."""
    if isinstance(error, Throttled):
        return _Failed("failed", THROTTLED, None, {"throttled": True})
    if isinstance(error, PermissionMissing):
        return _Failed(
            "failed",
            f"Microsoft Graph refused: the app lacks the {error.role} application permission "
            "(or its admin consent).",
            _permission_fix([error.role]),
            {"role": error.role},
        )
    if isinstance(error, AccessPolicyBlocked):
        return _Failed(
            "failed",
            f"{mailbox or 'The mailbox'} is outside the app's application access policy in "
            "Exchange Online.",
            "Choose a test mailbox that belongs to the policy's group, or add this mailbox to it.",
        )
    if isinstance(error, MailboxUnavailable):
        return _Failed("failed", str(error), None)
    return _Failed("failed", str(error), None)


class _Run:
    def __init__(self, provider: GraphProvider, new_configuration: bool) -> None:
        self.provider = provider
        self.new_configuration = new_configuration
        self.results: list[CheckResult] = []

    async def step(
        self,
        name: str,
        body: Callable[[], Awaitable[tuple[str, dict[str, Any]]]],
        *,
        required: bool = True,
        mailbox: str | None = None,
    ) -> bool:
        started = time.perf_counter()
        status: CheckStatus = "ok"
        fix: str | None = None
        details: dict[str, Any] = {}
        try:
            message, details = await body()
        except _Failed as verdict:
            status, message, fix, details = (
                verdict.status,
                verdict.message,
                verdict.fix,
                verdict.details,
            )
        except ProviderError as error:
            explained = _explain(error, mailbox)
            status, message, fix, details = (
                explained.status,
                explained.message,
                explained.fix,
                explained.details,
            )
        if not required and status == "failed":
            status = "warning"
        self.results.append(
            CheckResult(
                name,
                TITLES[name],
                status,
                message,
                fix,
                details,
                round((time.perf_counter() - started) * 1000, 1),
                required,
            )
        )
        return status == "ok"

    def skip(self, name: str, message: str, *, required: bool = True) -> None:
        self.results.append(
            CheckResult(name, TITLES[name], "skipped", message, None, {}, 0.0, required)
        )


async def run_checks(
    provider: GraphProvider,
    *,
    new_configuration: bool = False,
    test_mailbox: str | None = None,
    retry_budget: float = CHECK_RETRY_BUDGET,
) -> CheckReport:
    """Run the connection test in order; see the module docstring for the steps."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    client = provider.client
    saved_policy = client.policy
    client.policy = replace(saved_policy, budget=min(saved_policy.budget, retry_budget))
    try:
        run = _Run(provider, new_configuration)
        await _all_steps(run, provider, test_mailbox)
    finally:
        client.policy = saved_policy
    return CheckReport(
        tuple(run.results),
        started_at.isoformat(),
        round((time.perf_counter() - started) * 1000, 1),
    )


async def _all_steps(run: _Run, provider: GraphProvider, test_mailbox: str | None) -> None:
    settings = provider.settings
    client = provider.client
    roles: list[str] = []

    # 1. token ---------------------------------------------------------------------------
    async def token() -> tuple[str, dict[str, Any]]:
        try:
            access = await provider.tokens.token()
        except AuthFailed as error:
            message, fix = token_failure(error, provider)
            details: dict[str, Any] = {"aadsts": error.aadsts}
            if isinstance(error, TokenRequestFailed):
                details["error"] = error.error
            if error.correlation_id:
                details["correlation_id"] = error.correlation_id
            raise _Failed("failed", message, fix, details) from None
        roles.extend(access.roles)
        kind = "certificate" if isinstance(settings.credential, ClientCertificate) else "secret"
        return (
            f"Signed in to tenant {settings.tenant} as client {settings.client_id} with a "
            f"client {kind}.",
            {"credential": kind, "cloud": settings.cloud.name},
        )

    if not await run.step("token", token):
        for name in ("permissions", "directory", "test-mailbox", "category", "test-item"):
            run.skip(name, "Skipped: there is no access token until sign-in works.")
        run.skip("reach", "Skipped: there is no access token.", required=False)
        return

    # 2. permissions ---------------------------------------------------------------------
    async def permissions() -> tuple[str, dict[str, Any]]:
        missing = [r for r in REQUIRED_ROLES if r not in roles]
        details = {"granted": sorted(roles), "missing": missing}
        if not missing:
            return (
                "All four application permissions are granted with admin consent: "
                f"{', '.join(REQUIRED_ROLES)}.",
                details,
            )
        if not roles:
            message = (
                "The access token carries no application permissions: admin consent has not "
                f"been granted for {', '.join(missing)}."
            )
        else:
            message = (
                f"The app lacks the application permission{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}: each must be added and admin consent granted."
            )
        if run.new_configuration:
            message += CONSENT_DELAY
        raise _Failed("failed", message, _permission_fix(missing), details)

    await run.step("permissions", permissions)

    # 3. directory -----------------------------------------------------------------------
    async def directory() -> tuple[str, dict[str, Any]]:
        page = await client.get("users", params={"$top": "1", "$select": "id"}, role=USERS_ROLE)
        await client.get("groups", params={"$top": "1", "$select": "id"}, role=DIRECTORY_ROLE)
        return (
            "Listed users and groups in the directory.",
            {"users_visible": bool(page.get("value"))},
        )

    await run.step("directory", directory)

    # 4. test mailbox ----------------------------------------------------------------------
    if not test_mailbox:
        run.results.append(
            CheckResult(
                "test-mailbox",
                TITLES["test-mailbox"],
                "warning",
                "No test mailbox is set, so reading mail, the warning category and test items "
                "were not tested.",
                "Set a test mailbox (for example a dedicated IT test user) and test again.",
                {},
                0.0,
                False,
            )
        )
        run.skip("category", "Skipped: no test mailbox is set.", required=False)
        run.skip("test-item", "Skipped: no test mailbox is set.", required=False)
    else:
        box = MailboxRef(id=test_mailbox, upn=test_mailbox, mail=test_mailbox)

        async def read_mailbox() -> tuple[str, dict[str, Any]]:
            try:
                provider._authorize(box)
                page = await client.get(
                    f"users/{segment(test_mailbox)}/mailFolders/inbox/messages",
                    params={"$top": "1", "$select": "id"},
                    headers={"Prefer": 'IdType="ImmutableId"'},
                    mailbox=test_mailbox,
                    role=MAIL_ROLE,
                )
            except MailboxNotAuthorized:
                raise _Failed(
                    "failed",
                    f"The test mailbox {test_mailbox} is outside this configuration's "
                    "authorized domains.",
                    "Choose a test mailbox in an authorized domain, or add its domain.",
                ) from None
            except AccessPolicyBlocked:
                raise _explain(AccessPolicyBlocked(), test_mailbox) from None
            except MailboxUnavailable as error:
                text = str(error)
                if "no user" in text.lower():
                    raise _Failed(
                        "failed",
                        f"There is no user {test_mailbox} in the tenant.",
                        "Check the test mailbox address (it must be a user principal name or "
                        "primary address in this tenant).",
                    ) from None
                raise _Failed(
                    "failed",
                    f"{test_mailbox} has no Exchange Online mailbox (no Exchange licence, "
                    "inactive, or hosted on-premises).",
                    "Choose a test mailbox that has an Exchange Online mailbox: a licensed user "
                    "or a shared mailbox.",
                ) from None
            return (
                f"Read the inbox of {test_mailbox}.",
                {"messages_seen": len(page.get("value") or ())},
            )

        mailbox_ok = await run.step("test-mailbox", read_mailbox, mailbox=test_mailbox)

        # 5. category ------------------------------------------------------------------
        async def category() -> tuple[str, dict[str, Any]]:
            change = await provider.ensure_category(
                box, settings.warning_category, settings.warning_color
            )
            said = {
                CategoryChange.CREATED: "was created",
                CategoryChange.UPDATED: "was updated",
                CategoryChange.UNCHANGED: "already exists",
            }[change]
            return (
                f"The warning category '{settings.warning_category}' {said} in {test_mailbox}.",
                {"change": change.value},
            )

        # 6. test item ------------------------------------------------------------------
        async def test_item() -> tuple[str, dict[str, Any]]:
            ref = await provider.create_message(
                box,
                "drafts",
                NewMessage(
                    subject=TEST_SUBJECT,
                    body="Created and removed by the mailtrawl connection test.",
                    body_type="text",
                ),
                draft=True,
            )
            path = f"users/{segment(test_mailbox)}/messages/{segment(ref.stable_id)}"
            try:
                await client.request(
                    "POST",
                    f"{path}/permanentDelete",
                    idempotent=True,
                    tolerate=frozenset({"ErrorItemNotFound"}),
                    mailbox=test_mailbox,
                    role=MAIL_ROLE,
                )
            except ProviderError as error:
                raise _Failed(
                    "failed",
                    f"A test draft was created in {test_mailbox} but could not be removed: {error}",
                    f"Delete the draft '{TEST_SUBJECT}' from that mailbox's Drafts folder.",
                ) from None
            try:
                await client.get(
                    path, params={"$select": "id"}, mailbox=test_mailbox, role=MAIL_ROLE
                )
            except NotFound:
                return (
                    f"Created a test draft in {test_mailbox} and removed it permanently.",
                    {},
                )
            raise _Failed(
                "failed",
                f"A test draft in {test_mailbox} is still there after it was removed.",
                f"Delete the draft '{TEST_SUBJECT}' from that mailbox's Drafts folder.",
            )

        if mailbox_ok:
            await run.step("category", category, mailbox=test_mailbox)
            await run.step("test-item", test_item, mailbox=test_mailbox)
        else:
            run.skip("category", "Skipped: the test mailbox cannot be read.")
            run.skip("test-item", "Skipped: the test mailbox cannot be read.")

    # 7. reach -------------------------------------------------------------------------------
    async def reach() -> tuple[str, dict[str, Any]]:
        sample: list[MailboxRef] = []
        async for user in provider.list_users_sample(settings.reach_sample):
            sample.append(user)
        if not sample:
            return ("No mailboxes to sample in the directory.", {"sampled": 0})
        problems = await provider.probe_mailboxes(sample)
        blocked = [
            m.address
            for m, p in zip(sample, problems, strict=True)
            if isinstance(p, AccessPolicyBlocked)
        ]
        without = [
            m.address
            for m, p in zip(sample, problems, strict=True)
            if isinstance(p, MailboxUnavailable) and not isinstance(p, AccessPolicyBlocked)
        ]
        for problem in problems:
            if problem is not None and not isinstance(problem, MailboxUnavailable):
                raise problem
        reached = len(sample) - len(blocked) - len(without)
        details = {
            "sampled": len(sample),
            "reached": reached,
            "blocked": len(blocked),
            "without_mailbox": len(without),
            "blocked_examples": blocked[:5],
        }
        if blocked:
            raise _Failed(
                "warning",
                f"An application access policy limits the app: {len(blocked)} of "
                f"{len(sample)} sampled mailboxes are blocked (for example {blocked[0]}). "
                "Investigations will skip the mailboxes outside the policy.",
                "If the app should reach every mailbox, change or remove the policy in Exchange "
                "Online (Get-ApplicationAccessPolicy / Remove-ApplicationAccessPolicy); if the "
                "limit is intended, nothing needs to change.",
                details,
            )
        return (f"The app reached {reached} of {len(sample)} sampled mailboxes.", details)

    await run.step("reach", reach, required=False)
