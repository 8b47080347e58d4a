"""``python -m ocrtune`` (what torchrun runs) is the same as the ``ocrtune`` command."""

from .cli import main

main()
