"""One module per ``bench`` sub-command; each defines ``register(subparsers)`` and sets ``func`` on its parser."""
