"""`python -m orchestrator`: the command line (see `cli`)."""

import sys

from orchestrator.cli import main

if __name__ == "__main__":
    sys.exit(main())
