"""``python -m resnet_zoo``: the same as the ``resnet-zoo`` command."""

import sys

from .cli import main

sys.exit(main())
