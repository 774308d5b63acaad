"""Helpers the test layers share: servers run in the background, databases."""
