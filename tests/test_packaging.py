"""What PyPI shows of the package: licence, links and a description that reads there."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_licence_file_is_the_mit_licence_the_metadata_names() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_the_project_links_to_its_repository_docs_and_issues() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_the_description_reads_on_pypi() -> None:
    """The README is the description: every link absolute (PyPI has no docs/ folder),
    and it starts with what the package is and how to install it, not with `make`."""
    readme = (ROOT / PROJECT["readme"]).read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links
    assert [link for link in links if not link.startswith("https://")] == []
    first_block = re.search(r"```\w*\n(.*?)```", readme, re.S)
    assert first_block is not None
    assert first_block[1].startswith("pip install nanobot-api")
    assert "Python 3.11" in readme.split("```")[0]


def test_the_chat_page_ships_inside_the_package() -> None:
    static = files("nanobot_api.adapters.http").joinpath("static")
    assert {"index.html", "chat.js", "chat.css"} <= {item.name for item in static.iterdir()}
    assert (
        "adapters/http/static/*"
        in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "package-data"
        ]["nanobot_api"]
    )
