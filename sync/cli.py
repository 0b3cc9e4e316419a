"""`flask directory import|approve|revert` and `flask demo`."""

import click

directory_commands: list[click.Command] = []


@click.command("demo")
def demo_command():
    """Load the demo customer."""
