"""minillama: build and train Llama 3 from scratch.

The package grows with the book, one stage per chapter, and a lower stage never imports a higher one:
``autograd`` (numpy) -> ``tokenizer`` -> ``numpy_llama`` -> ``model`` (PyTorch) -> ``data`` / ``train`` -> ``parallel``.
Import the stage you need (``from minillama.autograd import Tensor``); importing ``minillama`` itself is cheap and
pulls in neither torch nor matplotlib.
"""

__version__ = "0.2.0"
