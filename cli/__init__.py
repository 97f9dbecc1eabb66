"""The operators' command line (``archive-vault``): the composition root.

It is the only package that wires settings, database, keys, policies and the
API together, so it sits above every library package and nothing imports it.
``main`` builds the Typer app; ``common`` holds what every command shares
(data directory, consoles, opening the vault, the operator as audit actor);
``archives``, ``service``, ``audit`` and ``policy`` hold the commands.
"""
