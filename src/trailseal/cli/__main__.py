"""``python -m trailseal.cli``."""

from trailseal.cli.main import main

main()
