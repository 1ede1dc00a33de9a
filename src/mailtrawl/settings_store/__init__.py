"""Runtime settings that administrators change in the dashboard, stored as overrides.

The `MAILTRAWL_*` environment and the TOML file give the defaults; a row in `setting_overrides`
(key -> JSON value) replaces one of them for every process that reads the same database.
`service.effective_settings(session, settings)` is what the remediation service acts on.
"""
