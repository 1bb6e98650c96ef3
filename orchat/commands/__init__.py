"""Commands: one module per subcommand, each with add_arguments(parser) and run(args) -> int.

orchat.args lists them (COMMANDS); orchat.cli imports one only when it is asked for. May import
any wing below (the foundation, wire, telemetry, docgen, chat, backup, health, gateway); nothing
imports a command module except orchat.cli and orchat.docgen.spec (by name, to read its flags).
"""
