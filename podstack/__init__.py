"""``import podstack`` / ``%load_ext podstack``: a thin alias of :mod:`podstack_jupyter`."""
import sys

import podstack_jupyter

sys.modules[__name__] = podstack_jupyter
