"""Docgen: the man page and the bash/zsh completions, generated from the argument definitions.

spec (reads orchat.args and each subcommand's add_arguments into one description), manpage,
completion. May import: the foundation (orchat.args, config). Imported by: commands (man,
completion) and `make docs`.
"""
