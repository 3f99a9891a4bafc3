"""Strategies of the iterated participation game (ALLC, ALLD, Rand, TFT, Mixed, MMZD, MMZDA)."""
