"""`python -m venvlayers`: the same CLI as the `venvlayers` command."""

from .cli.main import run

run()
