"""`python -m hostwarden` runs the CLI."""

from hostwarden.cli.main import main

main()
