"""`python -m trainctl`, and the console script (pyproject: trainctl.__main__:main)."""

import gc


def main() -> None:
    # The CLI imported with the collector paused, then frozen: trainctl/cli/collector.py says
    # why, with the other measures. Here, before importing trainctl.cli, and only here, where
    # trainctl is the process.
    gc.disable()
    try:
        from trainctl.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    cli_main()


if __name__ == "__main__":
    main()
