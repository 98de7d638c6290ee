"""neardex server: gRPC service over a data folder of collections, metrics and the CLI."""
