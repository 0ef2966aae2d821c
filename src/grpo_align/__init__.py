"""grpo-align: the policies GRPO and its variants converge to (Vojnovic & Yun, arXiv:2502.18548)."""

from grpo_align.errors import InputError
from grpo_align.theory import *  # noqa: F401,F403
from grpo_align.theory import __all__ as _theory_all

__version__ = "0.1.0"
__all__ = ["InputError", "__version__", *_theory_all]
