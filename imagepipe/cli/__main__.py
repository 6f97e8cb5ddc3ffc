"""``python -m imagepipe.cli``: the same as the ``imagepipe`` script."""

from imagepipe.cli.app import main

main()
