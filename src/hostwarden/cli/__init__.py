"""The `hostwarden` command line: one typer sub-app per domain, mounted in main."""
