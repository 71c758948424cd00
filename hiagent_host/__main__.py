"""`python -m hiagent_host`: the `hiagent-host` command."""

import sys

from hiagent_host.cli import main

sys.exit(main())
