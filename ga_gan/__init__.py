"""ga-gan: evolve GAN weights with evosax populations, and compare honestly with Adam."""

__version__ = "0.1.0"
