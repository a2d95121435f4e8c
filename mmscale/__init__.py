"""mmscale: JAX-native pretraining of multimodal LLMs, with a knowledge-density data engine."""

__version__ = "0.1.0"
