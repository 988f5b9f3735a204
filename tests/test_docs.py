"""The documentation site builds, strictly and offline, with every page it promises.

``mkdocs build --strict`` (``mkdocs.yml`` sets ``strict: true``) turns every warning into a
failure: a broken link or anchor, a page missing from the site, an API reference
(``::: module``) that does not resolve, a docstring whose arguments do not match the signature,
a notebook linking to a page that does not exist. The build here runs with sockets refused, so a
build step that needs the network fails too.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.structure.files import File, Files

from scratchcnn.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts/docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module's tests, with no network."""
    site_dir = tmp_path_factory.mktemp("site")

    def refuse(*args, **kwargs):
        raise OSError("the documentation build must not use the network")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.chdir(ROOT)
        config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site_dir))
        assert config.strict, "mkdocs.yml must build strictly"
        build(config)  # raises mkdocs.exceptions.Abort on any warning
    return site_dir


def page(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text(encoding="utf-8")


def test_every_promised_page_is_built(site: Path) -> None:
    for path in (
        "",  # the README
        "theory/convolution",
        "architecture",
        "cli",
        "checkpoint-format",
        "studies",
        "bridge",
        "performance",
        "api/layers",
        "notebooks/01_layers_from_scratch",
        "notebooks/06_why_it_is_fast",
    ):
        assert (site / path / "index.html").is_file(), f"no page {path or 'index'}"
    front = page(site, "")
    assert '<h1 id="scratchcnn">' in front and 'href="theory/"' in front  # README, links rewritten


def test_api_reference_renders_the_public_objects(site: Path) -> None:
    layers = page(site, "api/layers")
    for name in ("Conv2d", "MaxPool2d", "Sequential", "fuse"):
        assert f'id="scratchcnn.layers.{name}"' in layers
    assert 'id="scratchcnn.fast.settings"' in page(site, "api/fast")
    assert 'id="scratchcnn.tools.gradcheck.check_layer"' in page(site, "api/tools")


def test_theory_formulas_are_left_for_mathjax(site: Path) -> None:
    convolution = page(site, "theory/convolution")
    assert 'class="arithmatex"' in convolution
    assert "javascripts/mathjax.js" in convolution


def test_notebook_links_point_at_site_pages(site: Path) -> None:
    backward = page(site, "notebooks/02_backward_pass")
    assert 'href="../../theory/convolution/"' in backward
    assert "../docs/theory" not in backward


def test_cli_reference_is_every_parser_help() -> None:
    text = hooks.cli_reference()
    for name in COMMANDS:
        assert f"## scratchcnn {name}\n" in text
        assert f"usage: scratchcnn {name}" in text
    assert "--epochs" in text and "--vs-torch" in text  # options of train and bench


def test_readme_links_are_rewritten_for_the_site() -> None:
    readme = (
        "[a](docs/bridge.md) [b](benchmarks/README.md#latest) ![c](docs/images/x.png) "
        "[d](https://example.org/docs/x.md) [e](#results)"
    )
    assert hooks.rewrite_links(readme, hooks.README_LINKS) == (
        "[a](bridge.md) [b](performance.md#latest) ![c](images/x.png) "
        "[d](https://example.org/docs/x.md) [e](#results)"
    )


def test_a_notebook_link_to_a_missing_page_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path))
    files = Files(
        [
            File("theory/convolution.md", str(ROOT / "docs"), str(tmp_path), True),
            File("notebooks/01_x.py", str(ROOT), str(tmp_path), True),
        ]
    )

    class Page:
        file = files.get_file_from_path("notebooks/01_x.py")

    Page.file.url = "notebooks/01_x/"  # as mkdocs-jupyter serves a notebook: a page

    html = '<a href="../docs/theory/convolution.md#a">x</a> <a href="../docs/nothing.md">y</a>'
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        out = hooks.on_page_content(html, Page, config, files)
    assert '<a href="../../theory/convolution/#a">x</a>' in out
    assert "notebooks/01_x.py links to ../docs/nothing.md" in caplog.text
