"""``python -m minillama.numpy_llama --steps 3000 ...``: train the numpy Llama on tinyshakespeare (``train.main``)."""

from minillama.numpy_llama.train import main

main()
