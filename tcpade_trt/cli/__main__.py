"""`python -m tcpade_trt.cli`: the same as the `tcpade-trt` console script."""

import sys

from . import main

sys.exit(main())
