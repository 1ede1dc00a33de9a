"""Reported emails: intake (upload, API, reporter tokens, reporting mailbox), cases with
verdicts and timelines, reporter notifications, automatic investigations and clustering."""
