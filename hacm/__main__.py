import sys

from hacm.cli import main

sys.exit(main())
