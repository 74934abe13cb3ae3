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
