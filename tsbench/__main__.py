import sys

from tsbench.cli import main

sys.exit(main())
