"""Command-line entry points, one module per command (see augmax_lib.__main__)."""
