"""hacm: a notebook research workbench for HA-CM self-supervised skeleton action recognition."""
from hacm.errors import HacmError

__version__ = "0.1.0"
__all__ = ["HacmError", "__version__"]
