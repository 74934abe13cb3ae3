"""The OpenAPI schema generates with no warnings, documents the API, and the docs render."""

import os
import subprocess
import sys

import pytest
import yaml
from django.conf import settings
from rest_framework.test import APIClient


def test_the_schema_validates_with_no_warnings():
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            os.devnull,
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.django_db
def test_the_schema_documents_leads_and_sender_identities():
    response = APIClient().get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    assert set(paths["/api/v1/leads/"]) >= {"get", "post"}
    assert set(paths["/api/v1/leads/bulk/"]) >= {"post"}
    assert set(paths["/api/v1/leads/{id}/"]) >= {"get", "patch", "delete"}
    assert set(paths["/api/v1/sender-identities/{id}/"]) >= {"get", "patch", "delete"}
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "Authorization"
    list_params = {p["name"] for p in paths["/api/v1/leads/"]["get"]["parameters"]}
    assert list_params >= {"email", "company", "validation_status", "q", "cursor"}
    assert "413" in paths["/api/v1/leads/bulk/"]["post"]["responses"]


@pytest.mark.django_db
def test_the_interactive_docs_render():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
