"""The commands, one module per group; importing trainctl.cli.app registers them in help order."""
