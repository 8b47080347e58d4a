"""``python -m ocrtune`` (what torchrun runs) is the same as the ``ocrtune`` command."""

from ocrtune.cli import main

main()
