"""What the API and CLI accept and show for mail configurations. Credentials are write-only."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Cloud = Literal["global", "usgov-high", "usgov-dod", "china", "custom"]
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}\.)+[a-z]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def _domain(value: str) -> str:
    cleaned = value.strip().lower().rstrip(".")
    try:
        cleaned = cleaned.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"'{value}' is not a valid domain name") from exc
    if not _DOMAIN.match(cleaned):
        raise ValueError(f"'{value}' is not a valid domain name")
    return cleaned


class SecretCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["secret"] = "secret"
    client_secret: SecretStr = Field(min_length=1, max_length=512)
    # Entra shows the expiry when the secret is created; knowing it lets us warn in time.
    expires_at: datetime | None = None


class CertificateCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["certificate"] = "certificate"
    private_key_pem: SecretStr = Field(min_length=1, max_length=64_000)
    certificate_pem: str = Field(min_length=1, max_length=64_000)


class PfxCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["pfx"] = "pfx"
    pfx_base64: SecretStr = Field(min_length=1, max_length=200_000)
    password: SecretStr | None = None


Credential = Annotated[
    SecretCredential | CertificateCredential | PfxCredential, Field(discriminator="kind")
]


class CustomEndpoints(BaseModel):
    """Where a custom cloud lives: the emulator, a sovereign cloud, a TLS-inspecting proxy."""

    model_config = ConfigDict(extra="forbid")
    authority_host: str = Field(min_length=1, max_length=2048)
    graph_endpoint: str = Field(min_length=1, max_length=2048)
    ca_bundle_pem: str | None = Field(default=None, max_length=1_000_000)

    @field_validator("authority_host", "graph_endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith("https://"):
            raise ValueError(
                "must be an https:// URL (Microsoft's libraries accept only TLS endpoints)"
            )
        return value


class ScopeSpec(BaseModel):
    """Which mailboxes an investigation covers by default."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["all", "groups", "departments", "users"] = "all"
    values: list[str] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _values_needed(self) -> ScopeSpec:
        if self.kind != "all" and not self.values:
            raise ValueError(f"a '{self.kind}' scope needs at least one value")
        return self


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("tenant", check_fields=False)
    @classmethod
    def _tenant(cls, value: str) -> str:
        value = value.strip()
        if _GUID.match(value):
            return value.lower()
        try:
            return _domain(value)
        except ValueError:
            raise ValueError(
                "must be the Directory (tenant) ID, a GUID, or a verified domain such as contoso.com"
            ) from None

    @field_validator("client_id", check_fields=False)
    @classmethod
    def _client_id(cls, value: str) -> str:
        value = value.strip()
        if not _GUID.match(value):
            raise ValueError(
                "must be the Application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000"
            )
        return value.lower()

    @field_validator("test_mailbox", check_fields=False)
    @classmethod
    def _mailbox(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not _EMAIL.match(value):
            raise ValueError("must be a mailbox address such as it-test@contoso.com")
        return value

    @field_validator("authorized_domains", check_fields=False)
    @classmethod
    def _domains(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return sorted({_domain(v) for v in value})


class ConfigurationCreate(_Common):
    name: str = Field(min_length=1, max_length=200)
    provider: Literal["m365"] = "m365"
    tenant: str
    client_id: str
    credential: Credential
    cloud: Cloud = "global"
    custom: CustomEndpoints | None = None
    test_mailbox: str | None = None
    authorized_domains: list[str] = Field(min_length=1, max_length=500)
    default_scope: ScopeSpec = Field(default_factory=ScopeSpec)
    enabled: bool = True

    @model_validator(mode="after")
    def _custom_endpoints(self) -> ConfigurationCreate:
        if self.cloud == "custom" and self.custom is None:
            raise ValueError(
                "a custom cloud needs 'custom' endpoints (authority_host, graph_endpoint)"
            )
        if self.cloud != "custom" and self.custom is not None:
            raise ValueError("'custom' endpoints are only for cloud 'custom'")
        return self


class ConfigurationUpdate(_Common):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    tenant: str | None = None
    client_id: str | None = None
    credential: Credential | None = None
    cloud: Cloud | None = None
    custom: CustomEndpoints | None = None
    test_mailbox: str | None = None
    authorized_domains: list[str] | None = Field(default=None, min_length=1, max_length=500)
    default_scope: ScopeSpec | None = None
    enabled: bool | None = None


class CredentialView(BaseModel):
    kind: str
    hint: str | None
    expires_at: datetime | None


class CheckView(BaseModel):
    name: str
    title: str
    status: Literal["ok", "failed", "warning", "skipped"]
    message: str
    fix: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    duration_ms: float | None = None


class TestReportView(BaseModel):
    ok: bool
    tested_at: datetime
    checks: list[CheckView]


class ConfigurationView(BaseModel):
    id: uuid.UUID
    name: str
    provider: str
    tenant: str
    client_id: str
    credential: CredentialView
    cloud: str
    custom: dict[str, Any] | None
    test_mailbox: str | None
    authorized_domains: list[str]
    default_scope: dict[str, Any] | None
    enabled: bool
    status: str
    last_test_at: datetime | None
    last_test: TestReportView | None
    created_at: datetime
    updated_at: datetime
