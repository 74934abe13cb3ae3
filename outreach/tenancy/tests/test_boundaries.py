"""House-style boundaries that a refactor must not quietly cross (STYLE.md, "Where code
lives"): one app never writes another app's tables or queries them with raw SQL (it calls
that app's services and selectors), and no module reaches for another module's private
names. Checked on the source, so a violation fails here rather than in review."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
APPS = ("outreach", "campaigns", "messaging", "suppression", "analytics")


def _sources(*packages: str) -> list[Path]:
    return [
        path
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        if "tests" not in path.parts and "migrations" not in path.parts
    ]


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in _sources(*APPS):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in APPS:
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert not found, found


def test_messaging_leaves_the_scheduled_actions_to_the_campaigns_app():
    found = [
        str(path.relative_to(ROOT))
        for path in _sources("messaging")
        if "ScheduledAction.objects" in path.read_text()
        or "campaigns_scheduledaction" in path.read_text()
    ]
    assert not found, found


def test_the_metrics_read_campaign_tables_through_campaign_selectors():
    source = (ROOT / "outreach" / "metrics.py").read_text()
    assert "campaigns_" not in source


# Where a flag's column may be read as ``tenant.<column>`` rather than through
# ``outreach.tenancy.flags`` ("read from one place"), and why.
FLAG_READS_ALLOWED = {
    ("outreach/tenancy/controls.py", "campaigns_enabled"): "sending_stop_reason: off is a stop",
    ("messaging/services/sending.py", "inbound_enabled"): "the email batch's row (flags.py)",
    ("campaigns/management/commands/seed_demo.py", "sms_enabled"): "the demo's own set-up",
}


def test_flags_are_read_through_the_flags_module():
    from outreach.tenancy.flags import FLAG_FIELDS

    columns = set(FLAG_FIELDS.values())
    direct = set()
    for path in _sources(*APPS):
        name = str(path.relative_to(ROOT))
        if name in ("outreach/tenancy/flags.py", "outreach/tenancy/models.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=name)):
            if isinstance(node, ast.Attribute) and node.attr in columns:
                direct.add((name, node.attr, node.lineno))
    found = sorted(
        f"{n}:{line} .{attr}" for n, attr, line in direct if (n, attr) not in FLAG_READS_ALLOWED
    )
    assert not found, found
    stale = set(FLAG_READS_ALLOWED) - {(n, attr) for n, attr, _ in direct}
    assert not stale, stale
