import sys

from sqltune.cli import main

sys.exit(main())
