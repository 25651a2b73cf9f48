"""Choosing a backbone without training them all: transferability scores and ``graft rank``."""
