"""MkDocs hook: ``<!-- config fields -->`` in a page becomes the config field reference,
generated from ``kd_jax.config.base_config()`` and the comments beside its fields
(``kd_jax/config_reference.py``), so the page cannot drift from the schema."""
from kd_jax import config_reference

MARKER = "<!-- config fields -->"


def on_page_markdown(markdown, page, config, files):  # pylint: disable=unused-argument
  if MARKER in markdown:
    markdown = markdown.replace(MARKER, config_reference.markdown())
  return markdown
