import sys

from vitalstream.cli import main

sys.exit(main())
