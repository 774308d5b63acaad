"""PixelRelay's shared runtime: what every service needs, written once."""
