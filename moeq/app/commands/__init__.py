"""One module per `moeq` subcommand; each exposes `register(subparsers)` and keeps heavy imports lazy."""

COMMANDS = ("zoo", "models", "run", "submit", "sweep", "study", "export", "serve", "worker", "runs", "db", "users")
