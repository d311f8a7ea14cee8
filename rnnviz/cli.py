"""The ``rnnviz`` command. Thin: every verb parses options, calls the library, and reports.

Errors in the user's input (:class:`RnnvizError`) become ``Error: ...`` and exit status 1, never a
traceback; Ctrl-C exits with 130.
"""

from __future__ import annotations

import json
import sys

import click

from .errors import RnnvizError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RnnvizError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnviz")
def main() -> None:
    """Train character-level RNNs and find the cells inside them.

    \b
    rnnviz train text.txt --out runs/m       # train a char-RNN
    rnnviz record runs/m text.txt --out st   # record every cell over a text
    rnnviz find st --feature in_quote        # rank cells against a hypothesis
    rnnviz serve st                          # explore in the browser
    """


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


# --- train, sample, eval (foundation) ---

# --- end train, sample, eval ---

# --- record (recorder) ---

# --- end record ---

# --- features, find, ablate, gradflow (discovery) ---

# --- end discovery ---

# --- export (HTML) ---

# --- end export ---

# --- serve (dashboard) ---

# --- end serve ---
