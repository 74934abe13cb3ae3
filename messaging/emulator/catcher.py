"""The mail-catcher page at ``/``: what the emulator accepted, newest first.

Everything that came from a request is HTML-escaped; HTML bodies are shown as escaped source
and in a sandboxed iframe (no scripts, no same-origin), so a campaign's markup cannot run here.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f4f4f4}
details{margin:.2rem 0}
pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:.5rem;margin:.3rem 0}
iframe{width:100%;height:16rem;border:1px solid #ddd;background:#fff}
.muted{color:#777}
code{font-size:12px}
"""


def _addresses(entries: list[dict[str, Any]] | None) -> str:
    return ", ".join(
        f"{entry.get('name')} <{entry.get('email')}>"
        if entry.get("name")
        else str(entry.get("email"))
        for entry in entries or []
        if isinstance(entry, dict)
    )


def _pairs(mapping: dict[str, Any]) -> str:
    if not mapping:
        return '<span class="muted">none</span>'
    rows = "".join(
        f"<tr><td><code>{escape(str(key))}</code></td><td><code>{escape(str(value))}</code></td></tr>"
        for key, value in mapping.items()
    )
    return f"<table>{rows}</table>"


def catcher_page(records: list[dict[str, Any]], *, total: int, public_key: str) -> str:
    rows = []
    for position, record in enumerate(records):
        when = dt.datetime.fromtimestamp(record["received_at"], dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        sender = record.get("from") or {}
        details = [
            f"<p><b>From:</b> {escape(_addresses([sender]))}"
            f" &nbsp; <b>Reply-To:</b> {escape(_addresses([record['reply_to']] if record.get('reply_to') else []))}"
            f" &nbsp; <b>Cc:</b> {escape(_addresses(record['cc']))}"
            f" &nbsp; <b>Bcc:</b> {escape(_addresses(record['bcc']))}</p>",
            f"<p><b>Categories:</b> {escape(', '.join(map(str, record['categories'])))}</p>",
            f"<details open><summary>Text body</summary><pre>{escape(record['text'])}</pre></details>",
        ]
        if record["html"]:
            details.append(
                "<details><summary>HTML body</summary>"
                f'<iframe sandbox="" srcdoc="{escape(record["html"], quote=True)}"></iframe>'
                f"<pre>{escape(record['html'])}</pre></details>"
            )
        details.append(f"<details><summary>Headers</summary>{_pairs(record['headers'])}</details>")
        details.append(
            f"<details><summary>Custom args</summary>{_pairs(record['custom_args'])}</details>"
        )
        rows.append(
            "<tr>"
            f"<td>{when}</td>"
            f"<td>{escape(_addresses(record['to']))}</td>"
            f"<td><details{' open' if position == 0 else ''}>"
            f"<summary>{escape(record['subject']) or '(no subject)'}</summary>"
            f"{''.join(details)}</details></td>"
            f"<td><code>{escape(record['x_message_id'])}</code></td>"
            "</tr>"
        )
    body = "".join(rows) or '<tr><td colspan="4" class="muted">Nothing received yet.</td></tr>'
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>SendGrid emulator</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>SendGrid emulator</h1>"
        f"<p>{total} message(s) held; showing the newest {len(records)}. "
        "JSON: <a href='/_emulator/messages'>/_emulator/messages</a> · "
        "<a href='/_emulator/stats'>stats</a>. "
        f"Webhook public key: <code>{escape(public_key)}</code></p>"
        "<table><thead><tr><th>Received (UTC)</th><th>To</th><th>Subject</th>"
        "<th>X-Message-Id</th></tr></thead>"
        f"<tbody>{body}</tbody></table></body></html>"
    )
