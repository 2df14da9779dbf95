"""Parkmate's version: the one pyproject.toml gives the installed distribution.

`parkmate --version`, the api's /healthz and OpenAPI document, and the image tag in
deploy/k8s/overlays/production all show it; CHANGELOG.md says what each one brought.
"""

from importlib.metadata import version

VERSION: str = version("parkmate")
